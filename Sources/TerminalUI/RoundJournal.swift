import Engine

/// The journal of one round, as the shell stores it: opened with the round's config (the shell
/// writes the `ReplayJournal` header), then the match loop hands it encoded chunks to append.
public protocol RoundJournal: MatchJournal {
    /// The round is over. `keep` is false once its replay is safely saved, true otherwise (then the
    /// journal is all that is left of the match, and must stay for recovery).
    func close(keep: Bool)
}
