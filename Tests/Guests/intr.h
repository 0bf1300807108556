/* IDT, local APIC and IOAPIC for the test guests: interrupts arrive on
 * vector 0x30 (from an IOAPIC pin or an MSI/MSI-X message) and bump
 * irq_count; wait_irq() sleeps in hlt until it changes. */
#ifndef VFSVM_INTR_H
#define VFSVM_INTR_H
#include "guest.h"

#define IRQ_VECTOR 0x30
#define LAPIC_BASE 0xfee00000UL
#define IOAPIC_BASE 0xfec00000UL

extern volatile u32 irq_count;
/* Called in the handler before the EOI (the transport acknowledges its
 * interrupt status there, when it has one). */
extern void (*irq_ack)(void);

void intr_init(void);
void ioapic_route(u64 ioapic, u32 pin, u8 vector);
/* The same, level-triggered and active-low: how Linux programs a PCI
 * interrupt the _PRT names. */
void ioapic_route_level(u64 ioapic, u32 pin, u8 vector);
void wait_irq(u32 seen);
#endif
