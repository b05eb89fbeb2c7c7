import Testing

@testable import InternetSim
