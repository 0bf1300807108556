// libvirt, loaded when first used (dlopen of libvirt.so.0) instead of linked:
// linking it maps libvirt and its ~40 libraries (gnutls, crypto, glib, ssh,
// krb5, ...) into every vfsvm process, about 8 MiB of resident memory that
// `vfsvm serve` never uses. Only the calls LibvirtCheck makes are here, with
// libvirt's pointer types as opaque pointers.
#ifndef CVFSVM_LIBVIRT_H
#define CVFSVM_LIBVIRT_H

/// VIR_DOMAIN_DEFINE_VALIDATE (libvirt-domain.h).
#define VFSVM_VIR_DOMAIN_DEFINE_VALIDATE 1u

/// 1 when libvirt.so.0 and every call below were found, else 0 (then
/// vfsvm_virt_load_error() says why).
int vfsvm_virt_load(void);
/// Why libvirt could not be loaded (dlerror's text), or NULL.
const char *vfsvm_virt_load_error(void);

// Each is libvirt's call of the same name (vir...); call vfsvm_virt_load()
// first and only when it returned 1.
void *vfsvm_virConnectOpen(const char *name);
void *vfsvm_virDomainDefineXMLFlags(void *conn, const char *xml, unsigned int flags);
int vfsvm_virDomainUndefine(void *domain);
int vfsvm_virDomainFree(void *domain);
int vfsvm_virGetVersion(unsigned long *libVer, const char *type, unsigned long *typeVer);
const char *vfsvm_virGetLastErrorMessage(void);
/// virSetErrorFunc(NULL, a handler that ignores every error).
void vfsvm_virSilenceErrors(void);

#endif
