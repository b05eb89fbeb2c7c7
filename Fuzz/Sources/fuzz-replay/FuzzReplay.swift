@_spi(Fuzzing) import TurfRules

/// libFuzzer entry point for the replay parser: a broken promise is a crash, so libFuzzer keeps the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzReplay(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let problem = ReplayFuzz.check(bytes) { fatalError(problem) }
    return 0
}
