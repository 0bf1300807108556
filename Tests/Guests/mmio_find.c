/* Finds the virtio-mmio device of a given type the way Linux does on a
 * board without a device tree: every LNRO0005 device in the DSDT, probed
 * in turn; its interrupt routed through the IOAPIC the MADT names. */
#include "virtio.h"
#include "intr.h"

const struct transport *virtio_mmio_probe(u64 address, u32 device_id);
int acpi_find_mmio(const struct hvm_start_info *si, const char *hid, int index, u64 *base, u32 *gsi);
void acpi_ioapic_for(const struct hvm_start_info *si, u32 gsi, u64 *ioapic, u32 *pin);

const struct transport *virtio_mmio_find(const struct hvm_start_info *si, u32 device_id) {
    u64 base;
    u32 gsi;
    for (int i = 0; acpi_find_mmio(si, "LNRO0005", i, &base, &gsi); i++) {
        const struct transport *t = virtio_mmio_probe(base, device_id);
        if (!t) continue;
        u64 ioapic;
        u32 pin;
        acpi_ioapic_for(si, gsi, &ioapic, &pin);
        puts("DSDT: virtio-mmio at ");
        put_hex(base);
        puts(", GSI ");
        put_dec(gsi);
        puts("\n");
        ioapic_route(ioapic, pin, IRQ_VECTOR);
        return t;
    }
    if (si->rsdp_paddr) fail("no LNRO0005 device of the wanted type in the DSDT");
    /* INTERIM, until the VMM writes ACPI tables (VfsvmBoot): the board's
     * first window and GSI (X86Layout, GSIAllocator). */
    const struct transport *t = virtio_mmio_probe(0xd0000000, device_id);
    if (!t) fail("no ACPI tables and no device at the board default window");
    puts("no ACPI tables: board default virtio-mmio at 0xd0000000, GSI 5\\n");
    ioapic_route(IOAPIC_BASE, 5, IRQ_VECTOR);
    return t;
}
