// KVM ioctl numbers (linux/kvm.h) as constants Swift can import: the _IO,
// _IOR, _IOW and _IOWR macros that build them are function-like and do not
// import. Only VfsvmKVM uses these.
#ifndef VFSVM_KVM_H
#define VFSVM_KVM_H

#include <linux/kvm.h>

// /dev/kvm (system ioctls)
static const unsigned long VFSVM_KVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long VFSVM_KVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long VFSVM_KVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long VFSVM_KVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long VFSVM_KVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;

// VM ioctls
static const unsigned long VFSVM_KVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long VFSVM_KVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long VFSVM_KVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
static const unsigned long VFSVM_KVM_SET_IDENTITY_MAP_ADDR = KVM_SET_IDENTITY_MAP_ADDR;
static const unsigned long VFSVM_KVM_CREATE_IRQCHIP = KVM_CREATE_IRQCHIP;
static const unsigned long VFSVM_KVM_CREATE_PIT2 = KVM_CREATE_PIT2;
static const unsigned long VFSVM_KVM_IRQ_LINE = KVM_IRQ_LINE;
static const unsigned long VFSVM_KVM_IRQFD = KVM_IRQFD;
static const unsigned long VFSVM_KVM_IOEVENTFD = KVM_IOEVENTFD;
static const unsigned long VFSVM_KVM_SET_GSI_ROUTING = KVM_SET_GSI_ROUTING;
static const unsigned long VFSVM_KVM_SIGNAL_MSI = KVM_SIGNAL_MSI;

// vCPU ioctls
static const unsigned long VFSVM_KVM_RUN = KVM_RUN;
static const unsigned long VFSVM_KVM_GET_REGS = KVM_GET_REGS;
static const unsigned long VFSVM_KVM_SET_REGS = KVM_SET_REGS;
static const unsigned long VFSVM_KVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long VFSVM_KVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long VFSVM_KVM_GET_FPU = KVM_GET_FPU;
static const unsigned long VFSVM_KVM_SET_FPU = KVM_SET_FPU;
static const unsigned long VFSVM_KVM_SET_CPUID2 = KVM_SET_CPUID2;
static const unsigned long VFSVM_KVM_GET_CPUID2 = KVM_GET_CPUID2;
static const unsigned long VFSVM_KVM_GET_MSRS = KVM_GET_MSRS;
static const unsigned long VFSVM_KVM_SET_MSRS = KVM_SET_MSRS;
static const unsigned long VFSVM_KVM_GET_LAPIC = KVM_GET_LAPIC;
static const unsigned long VFSVM_KVM_SET_LAPIC = KVM_SET_LAPIC;
static const unsigned long VFSVM_KVM_TRANSLATE = KVM_TRANSLATE;

// Flags built from enum bit numbers, which Swift cannot evaluate in a macro.
static const unsigned int VFSVM_KVM_IOEVENTFD_FLAG_DATAMATCH = KVM_IOEVENTFD_FLAG_DATAMATCH;
static const unsigned int VFSVM_KVM_IOEVENTFD_FLAG_PIO = KVM_IOEVENTFD_FLAG_PIO;
static const unsigned int VFSVM_KVM_IOEVENTFD_FLAG_DEASSIGN = KVM_IOEVENTFD_FLAG_DEASSIGN;
static const unsigned int VFSVM_KVM_IRQFD_FLAG_DEASSIGN = KVM_IRQFD_FLAG_DEASSIGN;
static const unsigned int VFSVM_KVM_IRQFD_FLAG_RESAMPLE = KVM_IRQFD_FLAG_RESAMPLE;

#endif
