// The embeddable library product: one import gives the whole model.
//
//     import KeyMM
//
// Layers, bottom up: KeyMMBase (units), KeyMMHardware (DRAM, engine, KeyID table,
// cache, cost clock), KeyMMKeys (key service), KeyMMKernel (Linux mm + MKTME),
// KeyMMTrace (scenario language), KeyMMWorkloads (run, replay, bench).
@_exported import KeyMMBase
@_exported import KeyMMHardware
@_exported import KeyMMKeys
@_exported import KeyMMKernel
@_exported import KeyMMChecker
@_exported import KeyMMTrace
@_exported import KeyMMWorkloads
