// See include/CVfsvmLibvirt.h.
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>

#include "CVfsvmLibvirt.h"

static void *(*p_connect_open)(const char *);
static void *(*p_define_xml_flags)(void *, const char *, unsigned int);
static int (*p_undefine)(void *);
static int (*p_domain_free)(void *);
static int (*p_get_version)(unsigned long *, const char *, unsigned long *);
static const char *(*p_last_error_message)(void);
static void (*p_set_error_func)(void *, void (*)(void *, void *));

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int loaded;
static const char *load_error;
static char load_error_text[512];

/// Keeps dlerror's text (its buffer is reused by the next dl call).
static void failed(void) {
    const char *e = dlerror();
    snprintf(load_error_text, sizeof load_error_text, "%s", e ? e : "unknown dlopen error");
    load_error = load_error_text;
}

static void *sym(void *h, const char *name) {
    void *p = dlsym(h, name);
    if (!p && !load_error) failed();
    return p;
}

static void load(void) {
    void *h = dlopen("libvirt.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) { failed(); return; }
    p_connect_open = sym(h, "virConnectOpen");
    p_define_xml_flags = sym(h, "virDomainDefineXMLFlags");
    p_undefine = sym(h, "virDomainUndefine");
    p_domain_free = sym(h, "virDomainFree");
    p_get_version = sym(h, "virGetVersion");
    p_last_error_message = sym(h, "virGetLastErrorMessage");
    p_set_error_func = sym(h, "virSetErrorFunc");
    loaded = !load_error;
}

int vfsvm_virt_load(void) {
    pthread_once(&once, load);
    return loaded;
}

const char *vfsvm_virt_load_error(void) {
    pthread_once(&once, load);
    return load_error;
}

void *vfsvm_virConnectOpen(const char *name) { return vfsvm_virt_load() ? p_connect_open(name) : NULL; }
void *vfsvm_virDomainDefineXMLFlags(void *conn, const char *xml, unsigned int flags) {
    return vfsvm_virt_load() ? p_define_xml_flags(conn, xml, flags) : NULL;
}
int vfsvm_virDomainUndefine(void *domain) { return vfsvm_virt_load() ? p_undefine(domain) : -1; }
int vfsvm_virDomainFree(void *domain) { return vfsvm_virt_load() ? p_domain_free(domain) : -1; }
int vfsvm_virGetVersion(unsigned long *libVer, const char *type, unsigned long *typeVer) {
    return vfsvm_virt_load() ? p_get_version(libVer, type, typeVer) : -1;
}
const char *vfsvm_virGetLastErrorMessage(void) { return vfsvm_virt_load() ? p_last_error_message() : NULL; }

static void ignore_error(void *user, void *error) { (void)user; (void)error; }
void vfsvm_virSilenceErrors(void) {
    if (vfsvm_virt_load()) p_set_error_func(NULL, ignore_error);
}
