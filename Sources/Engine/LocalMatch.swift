/// Runs the ticks of a match on one peer, in a fixed order of systems:
///
/// 1. each local player's controller, in player-id order, makes its ops for the tick, which are
///    applied at once (zero input delay) and queued for sending;
/// 2. remote ops received since the last tick are merged, in arrival order (any order gives the
///    same state; a shell may also merge them as they arrive, between ticks: `mergeDelivered`);
/// 3. the tick counter advances.
///
/// After a stall the shell may `skip(to:)` ticks instead of running them (no ops are made for them).
///
/// No clock and no I/O: the shell decides when a tick is due (`TickStepper`) and what to do with
/// `outbox`.
public struct LocalMatch<Controller: PlayerController> {
    public typealias Game = Controller.Game
    public private(set) var replica: Replica<Game>
    /// Controllers of the players this peer owns, by player id.
    public var controllers: [PlayerID: Controller]
    private let order: [PlayerID]
    /// The next tick to run.
    public private(set) var tick: Tick = 0
    /// Ops made here, for the networking layer to send (it drains this).
    public var outbox: [Op<Game.Payload>] = []
    public var recordOutbox = false
    /// Every op merged here that was new (local, and remote unless a duplicate or rejected), for
    /// the shell to append to the match's journal (`ReplayJournal`); filled when `recordJournal`.
    public var journal: [Op<Game.Payload>] = []
    public var recordJournal = false
    private var inbox: [Op<Game.Payload>] = []

    public init(config: MatchConfig, controllers: [PlayerID: Controller]) throws {
        replica = try Replica<Game>(config: config)
        self.controllers = controllers
        order = controllers.keys.sorted()
    }

    public var isOver: Bool { tick > replica.config.lengthTicks }

    /// Queues a remote op for the next tick's merge.
    public mutating func deliver(_ op: Op<Game.Payload>) { inbox.append(op) }

    /// Runs one tick. Does nothing once the match is over.
    public mutating func step() {
        guard !isOver else { return }
        for p in order {
            // A controller taken out of `controllers` since (it is settable) makes no more ops.
            guard let payloads = controllers[p]?.step(tick: tick, player: p, state: replica.state) else { continue }
            for payload in payloads {
                let op = replica.local(payload, player: p, tick: tick)
                if recordOutbox { outbox.append(op) }
                if recordJournal { journal.append(op) }
            }
        }
        mergeDelivered()
        tick += 1
    }

    /// Merges the remote ops delivered since the last tick now, between ticks, instead of at the
    /// next tick (a front end draws them as soon as they arrive). Merges commute, so the state
    /// after the next tick is the same either way. Returns how many were new.
    @discardableResult
    public mutating func mergeDelivered() -> Int {
        var new = 0
        for op in inbox {
            switch replica.receive(op) {
            case .merged, .equivocation:
                new += 1
                if recordJournal { journal.append(op) }
            case .duplicate, .rejected: break
            }
        }
        inbox.removeAll(keepingCapacity: true)
        return new
    }

    /// Advances the tick counter to `target` without running the ticks in between: after a stall
    /// the shell's `TickStepper` skips ticks rather than falling behind the shared clock. Skipped
    /// ticks produce no local ops (controllers are not called for them, so a local avatar makes no
    /// moves and resumes at `target` from where it stood); remote ops already delivered stay queued
    /// and are merged by the next `step()`. Never goes backwards, nor past the end of the match.
    public mutating func skip(to target: Tick) {
        guard target > tick else { return }
        tick = min(target, replica.config.lengthTicks + 1)
    }

    /// Merges a snapshot of this match (`ReplicaSnapshot`): a peer that rejoins after a crash
    /// takes every op the others hold, its own included, so its own log resumes after the highest
    /// seq it had sent and never reuses one (`Replica.merge`). New ops go to the journal.
    public mutating func merge(_ snapshot: ReplicaSnapshot<Game>) throws {
        let before = replica.snapshot()
        try replica.merge(snapshot)
        // Our own players resume where their logs stand, so their next ops are legal after them.
        for p in order {
            if let last = replica.lastApplied(of: p) {
                controllers[p]?.resume(after: last, player: p, state: replica.state)
            }
        }
        guard recordJournal else { return }
        for (p, log) in snapshot.logs.enumerated() {
            let had = Set(before.logs[p].map(\.seq))
            journal += log.filter { !had.contains($0.seq) }
        }
    }

    /// Forgets a player's ops from `seq` on (`Replica.retract`), and any still waiting to merge.
    public mutating func retract(_ player: PlayerID, from seq: UInt32) {
        inbox.removeAll { $0.player == player && $0.seq >= seq }
        replica.retract(player, from: seq)
    }

    /// Stops a player's log at `seq` on a verdict (`Replica.applyVerdict`).
    public mutating func applyVerdict(_ player: PlayerID, fromSeq seq: UInt32, rule: String, tick: Tick) {
        replica.applyVerdict(player, fromSeq: seq, rule: rule, tick: tick)
    }

    /// Runs to the end of the match.
    public mutating func runToEnd() { while !isOver { step() } }

    /// The recording of everything merged so far.
    public func recording() throws -> Replay<Game> {
        try Replay(config: replica.config, logs: replica.allLogs, equivocations: replica.equivocations)
    }
}
