/* Finds the virtio-mmio device of a given type the way Linux does on a
 * board without a device tree: every LNRO0005 device in the DSDT, probed
 * in turn; its interrupt routed through the IOAPIC the MADT names. */
#include "virtio.h"
#include "intr.h"

const struct transport *virtio_mmio_probe(u64 address, u32 device_id);
int acpi_find_mmio(const struct hvm_start_info *si, const char *hid, int index, u64 *base, u32 *gsi);
void acpi_ioapic_for(const struct hvm_start_info *si, u32 gsi, u64 *ioapic, u32 *pin);

/* The `skip`th (0-based) virtio-mmio device of type `device_id`, or 0. */
const struct transport *virtio_mmio_find(const struct hvm_start_info *si, u32 device_id, int skip) {
    u64 base;
    u32 gsi;
    for (int i = 0; acpi_find_mmio(si, "LNRO0005", i, &base, &gsi); i++) {
        const struct transport *t = virtio_mmio_probe(base, device_id);
        if (!t || skip-- > 0) continue;
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
    return 0;
}
