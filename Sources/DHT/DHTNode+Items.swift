import Bencode
import Determinism
import Logging
import NetCore
import Sodium

/// BEP 44: storing and finding immutable and mutable items, in every family the socket reaches.
extension DHTNode {
    /// Finds a mutable item by its public key and salt; the newest valid version wins.
    public func getMutable(publicKey: [UInt8], salt: [UInt8] = [], _ completion: @escaping (MutableItem?) -> Void) {
        scheduler.assertInLoop()
        FamilyLookups(
            node: self,
            target: MutableItem.target(publicKey: publicKey, salt: salt),
            kind: .getItem(salt: salt),
            families: families
        ) { r, _ in
            if case .mutable(let m)? = r.item { completion(m) } else { completion(nil) }
        }.start()
    }

    /// Finds an immutable item by its target (SHA-1 of its bencoded value).
    public func getImmutable(_ target: NodeID, _ completion: @escaping (BValue?) -> Void) {
        scheduler.assertInLoop()
        FamilyLookups(node: self, target: target, kind: .getItem(salt: []), families: families) { r, _ in
            completion(r.item?.value)
        }.start()
    }

    /// Stores an item on the closest nodes that hand out tokens. Calls back with how many stored it.
    public func put(_ item: DHTItem, _ completion: @escaping (Int) -> Void) {
        scheduler.assertInLoop()
        let salt: [UInt8]
        if case .mutable(let m) = item { salt = m.salt } else { salt = [] }
        FamilyLookups(node: self, target: item.target, kind: .getItem(salt: salt), families: families) {
            [weak self] result, _ in
            guard let self else { return }
            let targets = result.closest.filter { result.tokens[$0] != nil }
            if targets.isEmpty {
                completion(0)
                return
            }
            var left = targets.count
            var stored = 0
            for n in targets {
                var extra: [(String, BValue)] = [("v", item.value)]
                if case .mutable(let m) = item {
                    extra += [("k", .bytes(m.publicKey)), ("seq", .int(m.seq)), ("sig", .bytes(m.signature))]
                    if !m.salt.isEmpty { extra.append(("salt", .bytes(m.salt))) }
                }
                let q = KRPCQuery(method: .put, id: self.id, token: result.tokens[n], extra: extra)
                self.queryWithRetries(q, to: n.address, expectedID: n.id) { outcome in
                    if case .response = outcome { stored += 1 }
                    left -= 1
                    if left == 0 { completion(stored) }
                }
            }
        }.start()
    }
}
