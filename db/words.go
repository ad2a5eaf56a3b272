package db

import (
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The tokenizer of a sealed store's word index. It is SQLite's unicode61
// (with remove_diacritics=1, FTS4's default) transcribed to Go, so that a
// sealed store finds what an unsealed one finds with FTS4: the same words,
// folded the same way. SQLite never sees the text of a sealed store, so
// the tokenizing has to happen here. TestWordsMatchUnicode61 compares the
// two on every input it is given.

// maxIndexedWords bounds the words indexed per message: the first this
// many distinct ones. A message of chat is a few dozen words; the bound
// keeps a pasted book from costing a thousand index rows (and a thousand
// random index pages in one commit). Words beyond it are not found by a
// whole-word search.
const maxIndexedWords = 256

// unicode61Words calls fn with each token of s, folded to lower case and
// without diacritics, in order, as unicode61 produces them (a token whose
// every character folds away is empty), and the offset in s just after
// the token's last character. fn's slice is reused: copy it to keep it.
// fn returns false to stop.
func unicode61Words(s string, fn func(tok []byte, end int) bool) {
	var buf [64]byte
	tok := buf[:0]
	i := 0
	for i < len(s) {
		c, w := decodeRune61(s[i:])
		i += w
		if !isAlnum61(c) {
			continue
		}
		tok = tok[:0]
		end := i
		for {
			if o := fold61(c); o != 0 {
				tok = utf8.AppendRune(tok, o)
			}
			end = i
			if i >= len(s) {
				break
			}
			c, w = decodeRune61(s[i:])
			i += w
			if !isAlnum61(c) && !isDiacritic61(c) {
				break
			}
		}
		if !fn(tok, end) {
			return
		}
	}
}

// decodeRune61 reads a code point as SQLite's FTS3_READ_UTF8 does for
// valid UTF-8, which maps the noncharacters U+FFFE and U+FFFF to U+FFFD.
// (Invalid UTF-8 differs in detail; the node stores valid UTF-8 only, and
// both sides of the index use this function anyway.)
func decodeRune61(s string) (rune, int) {
	if s[0] < utf8.RuneSelf {
		return rune(s[0]), 1
	}
	c, w := utf8.DecodeRuneInString(s)
	if c&^1 == 0xFFFE {
		c = utf8.RuneError
	}
	return c, w
}

// isAlnum61 is sqlite3FtsUnicodeIsalnum: letters and digits (and private
// use characters) of Unicode 6.1.
func isAlnum61(c rune) bool {
	if c < 128 {
		return unicode61ASCII[c>>5]&(1<<(c&31)) == 0
	}
	if c >= 1<<22 {
		return true
	}
	key := uint32(c)<<10 | 0x3FF
	lo, hi, res := 0, len(unicode61NotAlnum)-1, 0
	for lo <= hi {
		mid := (lo + hi) / 2
		if key >= unicode61NotAlnum[mid] {
			res, lo = mid, mid+1
		} else {
			hi = mid - 1
		}
	}
	e := unicode61NotAlnum[res]
	return uint32(c) >= e>>10+e&0x3FF
}

// isDiacritic61 is sqlite3FtsUnicodeIsdiacritic: the combining marks that
// unicode61 keeps inside a token (and then drops).
func isDiacritic61(c rune) bool {
	const mask0, mask1 = 0x08029FDF, 0x000361F8
	switch {
	case c < 768 || c > 817:
		return false
	case c < 768+32:
		return mask0&(1<<(c-768)) != 0
	default:
		return mask1&(1<<(c-768-32)) != 0
	}
}

// fold61 is sqlite3FtsUnicodeFold with remove_diacritics=1: lower case,
// then the simple diacritics removed; 0 for a mark that folds away.
func fold61(c rune) rune {
	if c < 128 {
		if c >= 'A' && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	if c >= 65536 {
		if c >= 66560 && c < 66600 {
			return c + 40
		}
		return c
	}
	lo, hi, res := 0, len(unicode61Fold)-1, -1
	for lo <= hi {
		mid := (lo + hi) / 2
		if c >= rune(unicode61Fold[mid].code) {
			res, lo = mid, mid+1
		} else {
			hi = mid - 1
		}
	}
	ret := c
	if res >= 0 {
		e := unicode61Fold[res]
		if c < rune(e.code)+rune(e.n) && 1&rune(e.flags)&(rune(e.code)^c) == 0 {
			ret = (c + rune(unicode61FoldOff[e.flags>>1])) & 0xFFFF
		}
	}
	return removeDiacritic61(ret)
}

// removeDiacritic61 is remove_diacritic with bComplex = 0.
func removeDiacritic61(c rune) rune {
	key := uint32(c)<<3 | 7
	lo, hi, res := 0, len(unicode61Dia)-1, 0
	for lo <= hi {
		mid := (lo + hi) / 2
		if key >= uint32(unicode61Dia[mid]) {
			res, lo = mid, mid+1
		} else {
			hi = mid - 1
		}
	}
	ch, d := unicode61DiaChar[res], uint32(unicode61Dia[res])
	if ch&0x80 != 0 || uint32(c) > d>>3+d&7 {
		return c
	}
	return rune(ch & 0x7F)
}

// The word index of a sealed store: a row (HMAC(words key, word), seq)
// for each of the first maxIndexedWords distinct words of a message,
// written at the end of the transaction that inserted it (Tx.indexMessages)
// and deleted with it by a trigger (migration 0006).

// wordHashBits: the index keeps the first 47 bits of each HMAC, which
// SQLite stores in 6 bytes. Words that share them are told apart by
// Search, which checks each candidate's text.
const wordHashBits = 47

type wordEntry struct{ word, seq int64 }

type wordHasher struct {
	mac hash.Hash
	sum []byte
}

func (sl *sealer) hasher() *wordHasher {
	return &wordHasher{mac: hmac.New(sha256.New, sl.words[:])}
}

func (h *wordHasher) hash(tok []byte) int64 {
	h.mac.Reset()
	h.mac.Write(tok)
	h.sum = h.mac.Sum(h.sum[:0])
	return int64(binary.BigEndian.Uint64(h.sum) >> (64 - wordHashBits))
}

// appendWords appends the index rows of message seq with text.
func (sl *sealer) appendWords(dst []wordEntry, h *wordHasher, seq int64, text string) []wordEntry {
	start := len(dst)
	unicode61Words(text, func(tok []byte, _ int) bool {
		if len(tok) == 0 {
			return true
		}
		w := h.hash(tok)
		for _, e := range dst[start:] {
			if e.word == w {
				return true
			}
		}
		dst = append(dst, wordEntry{w, seq})
		return len(dst)-start < maxIndexedWords
	})
	return dst
}

// insertWords writes index rows with one statement: SQLite reads them
// from a JSON array, which costs less than a statement per row.
func insertWords(exec func(string, ...any) (sql.Result, error), entries []wordEntry) error {
	if len(entries) == 0 {
		return nil
	}
	b := make([]byte, 0, 2+len(entries)*24)
	b = append(b, '[')
	for i, e := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, e.word, 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, e.seq, 10)
		b = append(b, ']')
	}
	b = append(b, ']')
	_, err := exec("INSERT OR IGNORE INTO message_words (word, seq) SELECT value ->> 0, value ->> 1 FROM json_each(?)", string(b))
	return err
}

// indexWords adds the messages inserted in this transaction to the word
// index, as indexMessages does for FTS4.
func (t *Tx) indexWords(sl *sealer) error {
	st, err := t.stmt("SELECT seq, id, body_sealed FROM messages WHERE seq > (SELECT indexed FROM fts_state) AND body_sealed IS NOT NULL")
	if err != nil {
		return err
	}
	rows, err := st.Query()
	if err != nil {
		return err
	}
	h := sl.hasher()
	var entries []wordEntry
	for rows.Next() {
		var (
			seq    int64
			id     []byte
			sealed []byte
		)
		if err := rows.Scan(&seq, &id, &sealed); err != nil {
			rows.Close()
			return err
		}
		text, err := sl.values.open(messageAD(id), sealed)
		if err != nil {
			rows.Close()
			return fmt.Errorf("index message %d: %w", seq, err)
		}
		entries = sl.appendWords(entries, h, seq, string(text))
		clear(text)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if err := insertWords(t.exec, entries); err != nil {
		return err
	}
	_, err = t.exec(`UPDATE fts_state SET indexed = (SELECT coalesce(max(seq), 0) FROM messages)`)
	return err
}

// A phrase of a query: the tokens of one word of it, each of which may
// be a prefix (a token followed by * in the query), as FTS4 reads a
// quoted phrase.
type phrase struct {
	tokens []string
	prefix []bool
}

// parseQuery reads a search as FTS4 reads ftsQuery's: each word a
// phrase, all of which must match.
func parseQuery(text string) []phrase {
	var out []phrase
	for _, w := range queryWords(text) {
		var p phrase
		unicode61Words(w, func(tok []byte, end int) bool {
			p.tokens = append(p.tokens, string(tok))
			p.prefix = append(p.prefix, end < len(w) && w[end] == '*')
			return true
		})
		// A word with no token (a letter unicode61 does not know) stays:
		// as an empty phrase, it makes FTS4 match nothing.
		out = append(out, p)
	}
	return out
}

// tokens is a text's tokens in one buffer, reused from text to text: a
// search may check every message.
type tokens struct {
	buf  []byte
	ends []int
}

func (ts *tokens) of(text string) *tokens {
	ts.buf, ts.ends = ts.buf[:0], ts.ends[:0]
	unicode61Words(text, func(tok []byte, _ int) bool {
		ts.buf = append(ts.buf, tok...)
		ts.ends = append(ts.ends, len(ts.buf))
		return true
	})
	return ts
}

func (ts *tokens) at(i int) []byte {
	start := 0
	if i > 0 {
		start = ts.ends[i-1]
	}
	return ts.buf[start:ts.ends[i]]
}

// matches reports whether the tokens hold every phrase.
func (ts *tokens) matches(phrases []phrase) bool {
	for _, p := range phrases {
		if !ts.holds(p) {
			return false
		}
	}
	return true
}

func (ts *tokens) holds(p phrase) bool {
	if len(p.tokens) == 0 {
		return false
	}
next:
	for i := 0; i+len(p.tokens) <= len(ts.ends); i++ {
		for j, t := range p.tokens {
			tok := ts.at(i + j)
			if string(tok) != t && !(p.prefix[j] && len(tok) >= len(t) && string(tok[:len(t)]) == t) {
				continue next
			}
		}
		return true
	}
	return false
}

// matches reports whether the tokens of a text hold every phrase.
func matches(phrases []phrase, text string) bool {
	var ts tokens
	return ts.of(text).matches(phrases)
}

// maxJoinedWords bounds the index lookups of one search; the words
// beyond are checked in the candidates' text.
const maxJoinedWords = 8

// searchSealed is Search on a sealed store. The whole words of the query
// pick candidates from the word index, newest first; each candidate's
// text is then opened and checked as FTS4 would check it (phrases,
// prefixes), which also drops the rare candidate that only shares a
// word's hash. A query of prefixes alone has no word to look up: it
// reads the messages newest first until it has limit results, so a
// prefix that matches little reads the whole history.
func (r *ReadTx) searchSealed(sl *sealer, peer, text string, limit int) ([]Message, error) {
	phrases := parseQuery(text)
	if len(phrases) == 0 || slices.ContainsFunc(phrases, func(p phrase) bool { return len(p.tokens) == 0 }) {
		return nil, nil
	}
	var words []string
	for _, p := range phrases {
		for j, t := range p.tokens {
			if t != "" && !p.prefix[j] && !slices.Contains(words, t) {
				words = append(words, t)
			}
		}
	}
	// Longer words are rarer: the first drives the lookup.
	slices.SortStableFunc(words, func(a, b string) int { return len(b) - len(a) })
	words = words[:min(len(words), maxJoinedWords)]
	if len(words) == 0 {
		return r.scanSealed(sl, peer, phrases, limit)
	}
	// CROSS JOIN keeps this order: the first word's rows, in seq order,
	// each checked against the others' rows.
	h := sl.hasher()
	var q strings.Builder
	q.WriteString("SELECT " + searchColumns + " FROM message_words w0")
	for i := 1; i < len(words); i++ {
		fmt.Fprintf(&q, " CROSS JOIN message_words w%d", i)
	}
	q.WriteString(" CROSS JOIN messages m WHERE w0.word = ?")
	for i := 1; i < len(words); i++ {
		fmt.Fprintf(&q, " AND w%d.word = ? AND w%d.seq = w0.seq", i, i)
	}
	q.WriteString(" AND m.seq = w0.seq ORDER BY w0.seq DESC")
	args := make([]any, len(words))
	for i, w := range words {
		args[i] = h.hash([]byte(w))
	}
	rows, err := r.q.Query(q.String(), args...)
	if err != nil {
		return nil, r.s.classify("search", err)
	}
	defer rows.Close()
	var (
		out []Message
		ts  tokens
	)
	for len(out) < limit && rows.Next() {
		m, err := r.s.scanMessage(rows)
		if err != nil {
			return nil, r.s.classify("search", err)
		}
		if (peer == "" || m.Peer == peer) && ts.of(m.Body).matches(phrases) {
			out = append(out, m)
		}
	}
	return out, r.s.classify("search", rows.Err())
}

// scanSealed answers a query of prefixes alone: every message opened,
// newest first, until limit of them match. Only the ids and sealed
// bodies are read for that; the matches are then read whole.
func (r *ReadTx) scanSealed(sl *sealer, peer string, phrases []phrase, limit int) ([]Message, error) {
	rows, err := r.q.Query("SELECT seq, id, body_sealed FROM messages WHERE ? = '' OR peer_id = ? ORDER BY seq DESC", peer, peer)
	if err != nil {
		return nil, r.s.classify("search", err)
	}
	var (
		seqs       []int64
		ts         tokens
		seq        int64
		id, sealed sql.RawBytes
	)
	for len(seqs) < limit && rows.Next() {
		if err := rows.Scan(&seq, &id, &sealed); err != nil {
			rows.Close()
			return nil, r.s.classify("search", err)
		}
		text, err := sl.values.open(messageAD(id), sealed)
		if err != nil {
			rows.Close()
			return nil, r.s.classify("search", fmt.Errorf("message %d: %w", seq, err))
		}
		if ts.of(string(text)).matches(phrases) {
			seqs = append(seqs, seq)
		}
		clear(text)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, r.s.classify("search", err)
	}
	out := make([]Message, 0, len(seqs))
	for _, seq := range seqs {
		m, err := r.s.scanMessage(r.q.QueryRow("SELECT "+messageColumns+" FROM messages WHERE seq = ?", seq))
		if err != nil {
			return nil, r.s.classify("search", err)
		}
		out = append(out, m)
	}
	return out, nil
}
