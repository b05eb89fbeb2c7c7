import FuzzHarness

/// libFuzzer entry point (libFuzzer supplies main).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FuzzHarness.run(.noise, Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
