@_spi(Fuzzing) import TurfRules

/// libFuzzer entry point for the map parser: maps travel inside every replay and journal, so a
/// broken promise is a crash and libFuzzer keeps the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMap(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let problem = MapFuzz.check(bytes) { fatalError(problem) }
    return 0
}
