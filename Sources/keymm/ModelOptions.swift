// Options every model-running subcommand shares: `--config FILE` (TOML) and repeatable
// `--set KEY=VALUE`, turned into a validated ModelConfig; and the contract's exit
// statuses (2 for bad input or usage) with errors on standard error.
import ArgumentParser
import Foundation
import KeyMM

struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Configuration file (TOML: key = value, the keys of --set).")
    var config: String?

    @Option(name: .long, help: ArgumentHelp("A setting KEY=VALUE (repeatable): \(ModelConfig.keys.map(\.key).joined(separator: ", ")).", valueName: "KEY=VALUE"))
    var set: [String] = []

    /// The configuration: the file first, then each --set in order.
    func modelConfig() throws(UsageError) -> ModelConfig {
        var model = ModelConfig()
        if let config {
            guard let text = try? String(contentsOfFile: config, encoding: .utf8) else {
                throw UsageError("cannot read configuration file \(config)")
            }
            do { try model.applyTOML(text, file: config) } catch { throw UsageError(error.description, located: true) }
        }
        for s in set {
            do { try model.apply(s) } catch { throw UsageError("--set \(s): \(error.message)") }
        }
        do { try model.validate() } catch { throw UsageError(error.message) }
        return model
    }
}

/// Bad input or usage: printed on standard error, exit status 2.
struct UsageError: Error, CustomStringConvertible {
    let message: String
    /// The message already names its place (`FILE:LINE:COLUMN: error: ...`): printed as it is.
    let located: Bool
    init(_ message: String, located: Bool = false) { self.message = message; self.located = located }
    var description: String { message }
}

/// Prints `message` on standard error.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// Runs `body`, turning input errors into the contract's exit status 2.
func withInputErrors(_ command: String, _ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as UsageError {
        printError(e.located ? e.message : "keymm \(command): error: \(e.message)")
        throw ExitCode(2)
    } catch let e as RunInputError {
        printError(e.description)
        throw ExitCode(2)
    }
}
