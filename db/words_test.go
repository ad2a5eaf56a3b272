package db

import (
	"database/sql"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// tokenizer61 is SQLite's own unicode61, through fts3tokenize: what FTS4
// makes of a text, to compare ours with.
type tokenizer61 struct{ db *sql.DB }

func newTokenizer61(t testing.TB) *tokenizer61 {
	t.Helper()
	d, err := sql.Open("sqlite3", filepath.Join(t.TempDir(), "tok.db"))
	if err != nil {
		t.Fatal(err)
	}
	d.SetMaxOpenConns(1)
	t.Cleanup(func() { d.Close() })
	if _, err := d.Exec("CREATE VIRTUAL TABLE temp.tok USING fts3tokenize(unicode61)"); err != nil {
		t.Fatal(err)
	}
	return &tokenizer61{d}
}

func (k *tokenizer61) tokens(t testing.TB, s string) []string {
	t.Helper()
	rows, err := k.db.Query("SELECT token FROM temp.tok WHERE input = ? ORDER BY position", s)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var tok string
		if err := rows.Scan(&tok); err != nil {
			t.Fatal(err)
		}
		out = append(out, tok)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func ourTokens(s string) []string {
	out := []string{}
	unicode61Words(s, func(tok []byte, _ int) bool { out = append(out, string(tok)); return true })
	return out
}

func compareTokens(t testing.TB, k *tokenizer61, s string) {
	t.Helper()
	want, got := k.tokens(t, s), ourTokens(s)
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("token %d of %d/%d: ours %q (%U), SQLite's %q (%U)", i, len(got), len(want), got[i], []rune(got[i]), want[i], []rune(want[i]))
			}
		}
		t.Fatalf("ours %d tokens, SQLite's %d; %q vs %q", len(got), len(want), got[min(len(got), len(want)):], want[min(len(got), len(want)):])
	}
}

// Every code point, alone between spaces (which characters make tokens,
// and how each folds) and after a letter (which marks stay inside a
// token): our tokenizer gives what SQLite's unicode61 gives.
func TestWordsMatchUnicode61(t *testing.T) {
	k := newTokenizer61(t)
	const chunk = 1 << 15
	for lo := rune(1); lo <= utf8.MaxRune; lo += chunk {
		var alone, after strings.Builder
		for c := lo; c < lo+chunk && c <= utf8.MaxRune; c++ {
			if !utf8.ValidRune(c) {
				continue
			}
			alone.WriteRune(c)
			alone.WriteByte(' ')
			after.WriteString(" a")
			after.WriteRune(c)
			after.WriteString("b")
		}
		compareTokens(t, k, alone.String())
		compareTokens(t, k, after.String())
	}
	for _, s := range []string{
		"", "   ", "Привет from the Café, don't", "ǅemal Ⅻ x\u0300y \u0300lead", "İstanbul ŞİŞLİ", "ß ẞ Ǆ",
		"ｆｕｌｌｗｉｄｔｈ ＡＢＣ", "𐐀𐐨 Deseret", "日本語のテキスト", "e\u0301e\u0301", "a\uFFFEb\uFFFF", "x_y-z.w@v",
	} {
		compareTokens(t, k, s)
	}
}

// FuzzWords compares our unicode61 with SQLite's on any valid UTF-8.
func FuzzWords(f *testing.F) {
	for _, s := range []string{"Привет from the Café", "ǅemal Ⅻ x\u0300y", "a\u0301\u0302b", "don't-stop 42x"} {
		f.Add(s)
	}
	k := newTokenizer61(f)
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			t.Skip("the store holds valid UTF-8 text; SQLite stops at a NUL")
		}
		compareTokens(t, k, s)
	})
}

// ftsMatcher is FTS4 over one document: whether a search matches a text.
type ftsMatcher struct{ db *sql.DB }

func newFTSMatcher(t testing.TB) *ftsMatcher {
	t.Helper()
	// In memory: a file would cost two fsyncs per input.
	d, err := sql.Open("sqlite3", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	d.SetMaxOpenConns(1)
	d.SetConnMaxLifetime(0)
	t.Cleanup(func() { d.Close() })
	if _, err := d.Exec("CREATE VIRTUAL TABLE f USING fts4 (body, tokenize=unicode61)"); err != nil {
		t.Fatal(err)
	}
	return &ftsMatcher{d}
}

func (f *ftsMatcher) matches(t testing.TB, text, query string) bool {
	t.Helper()
	if _, err := f.db.Exec("DELETE FROM f; INSERT INTO f (docid, body) VALUES (1, ?)", text); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := f.db.QueryRow("SELECT count(*) FROM f WHERE f MATCH ?", ftsQuery(query)).Scan(&n); err != nil {
		t.Fatalf("FTS4 on %q: %v", ftsQuery(query), err)
	}
	return n == 1
}

// FuzzSearchMatchesFTS4: a sealed store's check of a candidate (phrases,
// prefixes, folding) agrees with FTS4 on whether a text matches a search.
func FuzzSearchMatchesFTS4(f *testing.F) {
	for _, c := range [][2]string{
		{"Quotes \"and\" OR NEAR( parentheses", `"and" OR NEAR(`}, {"don't stop", "don't"}, {"dont stop", "don't"},
		{"the Café crème", "cafe CRÈME*"}, {"parentheses", "parenth*"}, {"ab-cd ef", "ab*cd"}, {"x y", "y x"},
		{"\u19b0 hello", "hello \u19b0"}, // a letter to Go, none to unicode61: FTS4 matches nothing
	} {
		f.Add(c[0], c[1])
	}
	m := newFTSMatcher(f)
	f.Fuzz(func(t *testing.T, text, query string) {
		if !utf8.ValidString(text) || !utf8.ValidString(query) || strings.ContainsRune(text+query, 0) {
			t.Skip("the store holds valid UTF-8 text; SQLite stops at a NUL")
		}
		phrases := parseQuery(query)
		if len(phrases) == 0 {
			if ftsQuery(query) != "" {
				t.Fatalf("%q: FTS4 searches %q, the word index nothing", query, ftsQuery(query))
			}
			return
		}
		if got, want := matches(phrases, text), m.matches(t, text, query); got != want {
			t.Fatalf("text %q, search %q (FTS4: %q): word index %v, FTS4 %v", text, query, ftsQuery(query), got, want)
		}
	})
}
