// KeyMMHardware: the machine under the kernel. See docs/architecture.md.
import KeyMMBase
