// KeyMMKernel: the Linux mm with MKTME. See docs/architecture.md.
import KeyMMBase
