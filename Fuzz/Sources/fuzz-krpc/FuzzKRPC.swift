@_spi(Fuzzing) import DHT

/// libFuzzer entry point: every input goes through the bencode and KRPC decoders; a broken
/// round-trip promise is a crash (so libFuzzer saves the input), as is any trap in the parsers.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzKRPC(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let problem = DHTFuzz.check(bytes) { fatalError(problem) }
    return 0
}
