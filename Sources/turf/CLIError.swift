/// Errors the CLI reports as one line, exit code 1 (bad input is never a crash).
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
