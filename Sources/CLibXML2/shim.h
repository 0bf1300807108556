// libxml2 (libxml2-dev): the XML parser and the RelaxNG validator that
// virt-xml-validate uses.
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/relaxng.h>
#include <libxml/xmlerror.h>
