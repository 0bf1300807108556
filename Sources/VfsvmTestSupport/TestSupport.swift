import VfsvmMemory
import VfsvmVirtio
