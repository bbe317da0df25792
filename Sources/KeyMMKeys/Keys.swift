// KeyMMKeys: the key service (keyrings, the "mktme" key type, KeyID references).
import KeyMMBase
