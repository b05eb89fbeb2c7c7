@_spi(Fuzzing) import TurfRules

/// libFuzzer entry point for journal recovery (`turf demo` recovers every journal it finds at
/// startup): a broken promise is a crash, so libFuzzer keeps the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJournal(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let problem = JournalFuzz.check(bytes) { fatalError(problem) }
    return 0
}
