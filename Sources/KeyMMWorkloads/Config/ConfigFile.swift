// `--config FILE`: the model's settings in TOML (read by TOMLDocument.swift through TOMLKit):
// `key = value` pairs with the keys of `--set`, optional `[table]` headers used only for
// grouping, values that are "strings", integers or booleans (true/false = on/off). Anything
// else — a syntax error, an array, a float, an unknown key, a bad value — is reported at its
// place, `FILE:LINE:COLUMN: error: ...`.
//
// Invariant: every accepted pair is applied through `ModelConfig.apply(key:value:)`, in document
// order, so a file accepts exactly what `--set` accepts (later settings win).
extension ModelConfig {
    /// Applies every setting of a TOML configuration text.
    public mutating func applyTOML(_ text: String, file: String) throws(ConfigFileError) {
        let doc = try TOMLDocument(text: text, file: file)
        for e in doc.entries {
            guard !e.isArray, let value = e.values.first else {
                throw ConfigFileError(file: file, line: e.line, column: e.column,
                                      message: "'\(e.key)': an array is a sweep axis (keymm sweep SPEC.toml); a configuration takes one value")
            }
            do { try apply(key: e.key, value: value.settingText) } catch {
                throw ConfigFileError(file: file, line: e.line, column: e.column, message: error.message)
            }
        }
    }
}
