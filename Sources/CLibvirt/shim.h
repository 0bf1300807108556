// libvirt's public API (libvirt-dev), for the in-process test:///default
// driver that normalises domain XML.
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
