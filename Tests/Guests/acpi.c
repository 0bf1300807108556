/* Finds a device in the ACPI tables the VMM wrote, the way an OS without
 * an AML interpreter could: RSDP (hvm_start_info.rsdp_paddr, else the
 * legacy scan of 0xE0000-0xFFFFF, ACPI 6.4 5.2.5.1) -> XSDT -> FADT ->
 * DSDT; in the DSDT's AML, the _HID string, then its _CRS resource
 * template's Memory32Fixed (ACPI 6.4 6.4.3.4) and Extended Interrupt
 * (6.4.3.6) descriptors. */
#include "guest.h"

struct sdt {
    char signature[4];
    u32 length;
    u8 revision, checksum;
    char oem[6], oem_table[8];
    u32 oem_revision, creator, creator_revision;
} __attribute__((packed));

static int checksum_ok(const u8 *p, u32 n) {
    u8 sum = 0;
    for (u32 i = 0; i < n; i++) sum = (u8)(sum + p[i]);
    return sum == 0;
}

static u64 find_rsdp(const struct hvm_start_info *si) {
    if (si->rsdp_paddr) return si->rsdp_paddr;
    for (u64 a = 0xe0000; a < 0x100000; a += 16)
        if (memcmp((void *)a, "RSD PTR ", 8) == 0 && checksum_ok((u8 *)a, 20)) return a;
    return 0;
}

static const struct sdt *find_table(const struct sdt *xsdt, const char *sig) {
    u32 n = (xsdt->length - (u32)sizeof *xsdt) / 8;
    const u8 *entries = (const u8 *)(xsdt + 1);
    for (u32 i = 0; i < n; i++) {
        u64 a;
        memcpy(&a, entries + 8 * i, 8);
        const struct sdt *t = (const void *)a;
        if (memcmp(t->signature, sig, 4) == 0) return t;
    }
    return 0;
}

static const struct sdt *find_xsdt(const struct hvm_start_info *si) {
    u64 rsdp = find_rsdp(si);
    if (!rsdp) { puts("acpi: no RSDP\n"); return 0; }
    const u8 *r = (const u8 *)rsdp;
    if (r[15] < 2 || !checksum_ok(r, 36)) { puts("acpi: RSDP is not ACPI 2.0+ or its checksum is wrong\n"); return 0; }
    u64 xsdt_addr;
    memcpy(&xsdt_addr, r + 24, 8);
    const struct sdt *xsdt = (const void *)xsdt_addr;
    if (memcmp(xsdt->signature, "XSDT", 4) || !checksum_ok((const u8 *)xsdt, xsdt->length)) { puts("acpi: bad XSDT\n"); return 0; }
    return xsdt;
}

/* The MADT's IOAPIC (entry type 1: id, address, GSI base) whose 24 inputs
 * hold `gsi`: its MMIO address and the pin. Falls back to the standard
 * IOAPIC at 0xfec00000 without an MADT. */
void acpi_ioapic_for(const struct hvm_start_info *si, u32 gsi, u64 *ioapic, u32 *pin) {
    *ioapic = 0xfec00000;
    *pin = gsi;
    const struct sdt *xsdt = find_xsdt(si);
    const struct sdt *madt = xsdt ? find_table(xsdt, "APIC") : 0;
    if (!madt) return;
    const u8 *p = (const u8 *)madt + sizeof *madt + 8, *end = (const u8 *)madt + madt->length;
    while (p + 2 <= end && p[1] >= 2) {
        if (p[0] == 1 && p + 12 <= end) {
            u32 address, base;
            memcpy(&address, p + 4, 4);
            memcpy(&base, p + 8, 4);
            if (gsi >= base && gsi < base + 24) { *ioapic = address; *pin = gsi - base; return; }
        }
        p += p[1];
    }
}

/* The `index`th device with _HID `hid` in the DSDT: its Memory32Fixed
 * base and first Extended Interrupt. */
int acpi_find_mmio(const struct hvm_start_info *si, const char *hid, int index, u64 *base, u32 *gsi) {
    const struct sdt *xsdt = find_xsdt(si);
    if (!xsdt) return 0;
    const struct sdt *fadt = find_table(xsdt, "FACP");
    if (!fadt || !checksum_ok((const u8 *)fadt, fadt->length)) { puts("acpi: no valid FADT\n"); return 0; }
    /* FADT: DSDT at 40 (32-bit), X_DSDT at 140 (64-bit, preferred when set). */
    u64 dsdt_addr = 0;
    u32 d32;
    memcpy(&d32, (const u8 *)fadt + 40, 4);
    if (fadt->length >= 148) memcpy(&dsdt_addr, (const u8 *)fadt + 140, 8);
    if (!dsdt_addr) dsdt_addr = d32;
    const struct sdt *dsdt = (const void *)dsdt_addr;
    if (memcmp(dsdt->signature, "DSDT", 4) || !checksum_ok((const u8 *)dsdt, dsdt->length)) { puts("acpi: bad DSDT\n"); return 0; }
    const u8 *aml = (const u8 *)dsdt;
    u32 len = dsdt->length, hl = (u32)strlen(hid);
    for (u32 i = sizeof *dsdt; i + hl < len; i++) {
        if (aml[i] != 0x0d || memcmp(aml + i + 1, hid, hl) != 0) continue; /* StringPrefix "LNRO0005" */
        int have_mem = 0, have_irq = 0;
        /* The device's _CRS follows its _HID within the same Device(). */
        for (u32 j = i + hl; j + 12 < len && j < i + 512 && !(have_mem && have_irq); j++) {
            if (!have_mem && aml[j] == 0x86 && aml[j + 1] == 0x09 && aml[j + 2] == 0x00) {
                u32 b;
                memcpy(&b, aml + j + 4, 4);
                *base = b;
                have_mem = 1;
            } else if (!have_irq && aml[j] == 0x89 && aml[j + 2] == 0x00 && aml[j + 4] >= 1) {
                memcpy(gsi, aml + j + 5, 4);
                have_irq = 1;
            }
        }
        if (have_mem && have_irq && index-- == 0) return 1;
    }
    return 0;
}
