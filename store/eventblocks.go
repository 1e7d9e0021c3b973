package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
)

// A session's log is stored as blocks of consecutive events, one row each,
// instead of a row per event: a page of 200 events is then two or three
// rows to read rather than 200 rows of seven columns, which is where
// reading a page went (SQLite's per-column calls, not the bytes). Appends
// add to the session's last block until it is full.
//
// A block's body is its records, one per event, in seq order (the first
// is the block's first_seq, each next one seq+1). A record is
//
//	uvarint  length of the rest
//	byte     flags (rec*)
//	varint   created_at in ms, less the previous record's (the first: less 0)
//	[uvarint length, bytes] the event type, unless recSameType
//	[uvarint length, bytes] the message id, if recMessage and not recSameMessage
//	[uvarint length, bytes] the cursor run id, if recRun and not recSameRun
//	[uvarint length, bytes] the stored event id, if recID
//	bytes    the payload: compact JSON, the rest of the record
//
// "Same" refers to the previous record of the same block, so a block reads
// only from its start; nearly every event shares its neighbour's type,
// message and run, so a record's overhead is four or five bytes.
const (
	recMessage = 1 << iota
	recSameMessage
	recRun
	recSameRun
	recSameType
	recID // an id stored before ids were derived (migration 0009)
)

// A block takes events until it holds maxBlockEvents or its body would pass
// maxBlockBytes (an event larger than that has a block of its own): small
// enough that rewriting the open block on each append stays cheap, large
// enough that a page of 200 touches two or three.
const (
	maxBlockEvents = 128
	maxBlockBytes  = 16 << 10
)

// record is one event as a block holds it; the strings alias the body.
type record struct {
	created   int64 // ms
	typ       []byte
	messageID []byte // nil: none
	runID     []byte // nil: none
	id        []byte // nil: derived from the seq
	payload   []byte
}

// blockWriter appends records to a body, tracking what the last one held.
type blockWriter struct {
	body  []byte
	count int
	last  record
}

// add appends r.
func (w *blockWriter) add(r record) {
	var flags byte
	var head [5 * binary.MaxVarintLen64]byte
	h := head[:0]
	h = binary.AppendVarint(h, r.created-w.last.created)
	fields := make([][]byte, 0, 4)
	if w.count > 0 && string(r.typ) == string(w.last.typ) {
		flags |= recSameType
	} else {
		fields = append(fields, r.typ)
	}
	fields, flags = w.optional(fields, flags, r.messageID, w.last.messageID, recMessage, recSameMessage)
	fields, flags = w.optional(fields, flags, r.runID, w.last.runID, recRun, recSameRun)
	if r.id != nil {
		flags |= recID
		fields = append(fields, r.id)
	}
	n := 1 + len(h) + len(r.payload)
	for _, f := range fields {
		n += uvarintLen(uint64(len(f))) + len(f)
	}
	w.body = binary.AppendUvarint(w.body, uint64(n))
	w.body = append(w.body, flags)
	w.body = append(w.body, h...)
	for _, f := range fields {
		w.body = binary.AppendUvarint(w.body, uint64(len(f)))
		w.body = append(w.body, f...)
	}
	w.body = append(w.body, r.payload...)
	w.count++
	w.last = r
}

// optional adds to flags what a record says of an optional id v: nothing
// when absent; present and same when the last record held it too (it is not
// written again); else present, with v appended to fields.
func (w *blockWriter) optional(fields [][]byte, flags byte, v, last []byte, present, same byte) ([][]byte, byte) {
	switch {
	case v == nil:
		return fields, flags
	case w.count > 0 && last != nil && string(v) == string(last):
		return fields, flags | present | same
	}
	return append(fields, v), flags | present
}

// fits reports whether a record with this payload may join the block.
func (w *blockWriter) fits(payload int) bool {
	return w.count == 0 || (w.count < maxBlockEvents && len(w.body)+payload+64 <= maxBlockBytes)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// errCorruptBlock is what a body that does not parse gives: the database
// was changed by something other than flapjack, or damaged.
var errCorruptBlock = errors.New("event block is corrupt")

// blockReader reads a body's records in order.
type blockReader struct {
	body []byte
	last record
	n    int // records read
}

// next returns the next record, false at the end of the body. The record is
// r.last, read in place over the one before (a field the record shares with
// it is already there), so it is valid until the next call.
func (r *blockReader) next() (*record, bool, error) {
	if len(r.body) == 0 {
		return nil, false, nil
	}
	size, k := binary.Uvarint(r.body)
	if k <= 0 || size < 2 || size > uint64(len(r.body)-k) {
		return nil, false, fmt.Errorf("%w: record %d", errCorruptBlock, r.n)
	}
	rec := r.body[k : k+int(size)]
	r.body = r.body[k+int(size):]
	flags := rec[0]
	rec = rec[1:]
	delta, k := binary.Varint(rec)
	if k <= 0 {
		return nil, false, fmt.Errorf("%w: record %d: time", errCorruptBlock, r.n)
	}
	rec = rec[k:]
	out := &r.last
	out.created += delta
	field := func() ([]byte, bool) {
		l, k := binary.Uvarint(rec)
		if k <= 0 || l > uint64(len(rec)-k) {
			return nil, false
		}
		f := rec[k : k+int(l) : k+int(l)]
		rec = rec[k+int(l):]
		return f, true
	}
	ok := true
	if flags&recSameType == 0 {
		out.typ, ok = field()
	} else if r.n == 0 {
		ok = false // the same type as no record
	}
	switch {
	case !ok:
	case flags&recMessage == 0:
		out.messageID = nil
	case flags&recSameMessage != 0:
		ok = out.messageID != nil
	default:
		out.messageID, ok = field()
	}
	switch {
	case !ok:
	case flags&recRun == 0:
		out.runID = nil
	case flags&recSameRun != 0:
		ok = out.runID != nil
	default:
		out.runID, ok = field()
	}
	out.id = nil
	if ok && flags&recID != 0 {
		out.id, ok = field()
	}
	if !ok || flags >= recID<<1 {
		return nil, false, fmt.Errorf("%w: record %d: fields", errCorruptBlock, r.n)
	}
	out.payload = rec[:len(rec):len(rec)]
	r.n++
	return out, true, nil
}

// packEvents is migration 0010's Go step: it packs the rows of the old
// events table into blocks, in seq order, a new block wherever a session
// or a run of consecutive seqs ends, keeping each stored id, then drops
// the table.
func packEvents(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT session_id, seq, id, message_id, cursor_run_id, event_type, payload, created_at
		FROM events ORDER BY session_id, seq`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		w           blockWriter
		session     string
		first, last int64
	)
	flush := func() error {
		if w.count == 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, insertBlockSQL, session, first, last, w.body)
		w = blockWriter{}
		return err
	}
	// Blocks are inserted while the read is open: SQLite lets a
	// transaction write to one table while it reads another.
	for rows.Next() {
		var (
			sid              string
			seq, created     int64
			id, msgID, runID sql.RawBytes
			typ, payload     sql.RawBytes
		)
		if err := rows.Scan(&sid, &seq, &id, &msgID, &runID, &typ, &payload, &created); err != nil {
			return err
		}
		if sid != session || seq != last+1 || !w.fits(len(payload)) {
			if err := flush(); err != nil {
				return err
			}
			session, first = sid, seq
		}
		// RawBytes are valid until the next Scan: the writer keeps what it
		// compares with the next record (add copies the rest into the body).
		w.add(record{created: created, typ: bytes.Clone(typ), messageID: bytes.Clone(msgID), runID: bytes.Clone(runID), id: id, payload: payload})
		last = seq
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	rows.Close()
	_, err = tx.ExecContext(ctx, `DROP TABLE events`)
	return err
}
