#include "intr.h"

struct idt_entry {
    u16 offset_low, selector;
    u8 ist, type;
    u16 offset_mid;
    u32 offset_high, zero;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));
extern const u64 exc_table[32];
extern void irq_entry_0x30(void);
volatile u32 irq_count;
void (*irq_ack)(void);

static void set_gate(int vector, u64 handler) {
    idt[vector] = (struct idt_entry){
        .offset_low = (u16)handler, .selector = 0x08, .ist = 0, .type = 0x8e,
        .offset_mid = (u16)(handler >> 16), .offset_high = (u32)(handler >> 32), .zero = 0};
}

void exception_handler(u64 vector, u64 w1, u64 w2) {
    puts("exception ");
    put_dec(vector);
    puts(" (");
    put_hex(w1);
    puts(" ");
    put_hex(w2);
    puts(")\n");
    debug_exit(0x7d);
}

void irq_handler(u64 vector) {
    (void)vector;
    irq_count++;
    if (irq_ack) irq_ack();
    mmio_write32(LAPIC_BASE + 0xb0, 0); /* EOI */
}

void intr_init(void) {
    for (int i = 0; i < 32; i++) set_gate(i, exc_table[i]);
    set_gate(IRQ_VECTOR, (u64)irq_entry_0x30);
    struct { u16 limit; u64 base; } __attribute__((packed)) idtr = {sizeof idt - 1, (u64)idt};
    __asm__ volatile("lidt %0" : : "m"(idtr));
    /* Mask the 8259 pair: everything comes through the IOAPIC or MSI. */
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    /* Local APIC: software enable (SVR bit 8), spurious vector 0xff; TPR 0. */
    mmio_write32(LAPIC_BASE + 0xf0, 0x1ff);
    mmio_write32(LAPIC_BASE + 0x80, 0);
}

void ioapic_route(u64 ioapic, u32 pin, u8 vector) {
    /* Redirection entry: fixed delivery, physical destination APIC 0,
     * active high, edge triggered, unmasked. */
    mmio_write32(ioapic, 0x10 + 2 * pin + 1);
    mmio_write32(ioapic + 0x10, 0);
    mmio_write32(ioapic, 0x10 + 2 * pin);
    mmio_write32(ioapic + 0x10, vector);
}

void ioapic_route_level(u64 ioapic, u32 pin, u8 vector) {
    mmio_write32(ioapic, 0x10 + 2 * pin + 1);
    mmio_write32(ioapic + 0x10, 0);
    mmio_write32(ioapic, 0x10 + 2 * pin);
    mmio_write32(ioapic + 0x10, (u32)vector | 1u << 13 | 1u << 15); /* active low, level */
}

void wait_irq(u32 seen) {
    /* sti; hlt is atomic: an interrupt after the check wakes the hlt. */
    __asm__ volatile("cli");
    while (irq_count == seen) __asm__ volatile("sti; hlt; cli" ::: "memory");
    __asm__ volatile("sti");
}
