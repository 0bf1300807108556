import VfsvmFUSE
