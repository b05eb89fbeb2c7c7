import TurfRules

/// Keys that steer: arrows, WASD and hjkl.
public func steering(_ key: Key) -> Direction? {
    switch key {
    case .up, .char("w"), .char("W"), .char("k"), .char("K"): return .up
    case .down, .char("s"), .char("S"), .char("j"), .char("J"): return .down
    case .left, .char("a"), .char("A"), .char("h"), .char("H"): return .left
    case .right, .char("d"), .char("D"), .char("l"), .char("L"): return .right
    default: return nil
    }
}
