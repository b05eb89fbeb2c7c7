import Foundation
import Testing
import TextOutput

/// Strings from files and peers: escaped for people, escaped for JSON, bounded in length.
@Suite struct SafeTextTests {
    /// Every terminal-driving class is escaped: C0 (ESC, BEL, CR), DEL, C1 (CSI U+009B, OSC
    /// U+009D), the bidi controls (RLO, isolates), zero-width characters and the BOM.
    @Test(arguments: [
        ("\u{1B}]0;pwned\u{07}", "\\x1b]0;pwned\\x07"),
        ("red\u{1B}[31m", "red\\x1b[31m"),
        ("a\rb\nc\td", "a\\x0db\\x0ac\\x09d"),
        ("del\u{7F}", "del\\x7f"),
        ("csi\u{9B}31m osc\u{9D}", "csi\\x9b31m osc\\x9d"),
        ("evil\u{202E}txt.exe", "evil\\u{202e}txt.exe"),
        ("iso\u{2066}x\u{2069}", "iso\\u{2066}x\\u{2069}"),
        ("zw\u{200B}j\u{FEFF}", "zw\\u{200b}j\\u{feff}"),
        ("line\u{2028}sep", "line\\u{2028}sep"),
    ])
    func controlsAreEscaped(input: String, shown: String) {
        #expect(SafeText.display(input) == shown)
        #expect(!SafeText.isClean(input))
        #expect(!SafeText.display(input).unicodeScalars.contains(where: SafeText.isUnsafe))
    }

    @Test func ordinaryTextPassesUnchanged() {
        for s in ["Bix", "Zoë", "日本語", "👩‍🚀 crew", "e\u{301}", "a\\x1b", ""] {
            #expect(SafeText.display(s) == s)
        }
    }

    /// A long (or zalgo) string is cut, by scalars, with an ellipsis.
    @Test func lengthIsBounded() {
        let long = String(repeating: "x", count: 10_000)
        #expect(SafeText.display(long, limit: 20) == String(repeating: "x", count: 20) + "…")
        let zalgo = "a" + String(repeating: "\u{301}", count: 5000)
        #expect(SafeText.display(zalgo).unicodeScalars.count == SafeText.defaultLimit + 1)
        // An escape is never cut in half.
        let escapes = String(repeating: "\u{1B}", count: 50)
        let shown = SafeText.display(escapes, limit: 10)
        #expect(shown == "\\x1b\\x1b…")
    }
}

@Suite struct JSONWriterTests {
    /// Strings round-trip exactly through a standard JSON parser, yet the text holds no control
    /// character a terminal would act on.
    @Test func stringsAreEscapedAndRoundTrip() throws {
        let nasty = "q\"b\\s\u{1B}]0;t\u{07}\u{9B}\u{202E}\u{E0001}\n\t\u{0}ok 日本"
        var j = JSONObject()
        j.add("name", nasty)
        j.add("k\u{1B}y", 1)
        let text = j.text
        #expect(!text.unicodeScalars.contains(where: SafeText.isUnsafe))
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(parsed["name"] as? String == nasty)
        #expect(parsed["k\u{1B}y"] as? Int == 1)
    }

    @Test func valuesAndOrder() throws {
        var inner = JSONObject()
        inner.add("cells", 3)
        var j = JSONObject()
        j.add("z", true)
        j.add("a", 1.5)
        j.add("nan", Double.nan)
        j.add("u", UInt64.max)
        j.addNull("n")
        j.add("list", [inner, inner])
        j.add("strs", ["a", "b"])
        j.add("opt", nil as String?)
        #expect(
            j.text
                == #"{"z":true,"a":1.5,"nan":null,"u":18446744073709551615,"n":null,"list":[{"cells":3},{"cells":3}],"strs":["a","b"],"opt":null}"#
        )
        #expect(try JSONSerialization.jsonObject(with: Data(j.text.utf8)) is [String: Any])
    }
}
