// Command rw2client sends one Prometheus remote-write request with the Prometheus
// project's own client (github.com/prometheus/client_golang/exp/api/remote) and
// prints what that client made of the answer, as one JSON object on stdout.
//
// The series come from a JSON file (-input FILE, "-" for stdin) or, without one,
// from a fixed set built from -cluster, -series and -timestamp:
//
//	{"series": [{
//	  "labels":     {"__name__": "m", "cluster": "alpha"},
//	  "samples":    [{"value": 1.5, "timestamp": 1700000000000}],
//	  "histograms": [{"count": 5, "sum": 9.5, "schema": 1, "zero_threshold": 0.001,
//	                  "zero_count": 1, "positive_spans": [{"offset": 0, "length": 2}],
//	                  "positive_deltas": [2, 0], "timestamp": 1700000000000}],
//	  "exemplars":  [{"labels": {"trace_id": "ab"}, "value": 1.5, "timestamp": 1700000000000}],
//	  "metadata":   {"type": "counter", "help": "text", "unit": "seconds"},
//	  "created_timestamp": 1699999990000}]}
//
// A histogram with "float": true is a float histogram ("count", "zero_count" and
// "positive_counts"/"negative_counts" taken as floats); otherwise an integer one with
// delta-encoded buckets.
//
// -proto 2 (default) sends io.prometheus.write.v2.Request with its symbols table;
// -proto 1 sends prometheus.WriteRequest (series, samples, exemplars and histograms;
// no metadata). -token adds "Authorization: Bearer TOKEN".
//
// Output: {"samples", "histograms", "exemplars"} as the client's WriteResponseStats,
// "error" (the client's error text, absent on success), "status" (the HTTP status of
// the last response, 0 if none) and "written_headers" (the
// X-Prometheus-Remote-Write-*-Written headers of that response, as received). The exit
// status is 0 whether or not the write succeeded; 2 for bad arguments or input.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/exp/api/remote"
	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

type span struct {
	Offset int32  `json:"offset"`
	Length uint32 `json:"length"`
}

type histogram struct {
	Float          bool      `json:"float"`
	Count          float64   `json:"count"`
	Sum            float64   `json:"sum"`
	Schema         int32     `json:"schema"`
	ZeroThreshold  float64   `json:"zero_threshold"`
	ZeroCount      float64   `json:"zero_count"`
	PositiveSpans  []span    `json:"positive_spans"`
	PositiveDeltas []int64   `json:"positive_deltas"`
	PositiveCounts []float64 `json:"positive_counts"`
	NegativeSpans  []span    `json:"negative_spans"`
	NegativeDeltas []int64   `json:"negative_deltas"`
	NegativeCounts []float64 `json:"negative_counts"`
	ResetHint      int32     `json:"reset_hint"`
	Timestamp      int64     `json:"timestamp"`
}

type sample struct {
	Value     float64 `json:"value"`
	Timestamp int64   `json:"timestamp"`
}

type exemplar struct {
	Labels    map[string]string `json:"labels"`
	Value     float64           `json:"value"`
	Timestamp int64             `json:"timestamp"`
}

type metadata struct {
	Type string `json:"type"`
	Help string `json:"help"`
	Unit string `json:"unit"`
}

type series struct {
	Labels           map[string]string `json:"labels"`
	Samples          []sample          `json:"samples"`
	Histograms       []histogram       `json:"histograms"`
	Exemplars        []exemplar        `json:"exemplars"`
	Metadata         *metadata         `json:"metadata"`
	CreatedTimestamp int64             `json:"created_timestamp"`
}

type input struct {
	Series []series `json:"series"`
}

type output struct {
	Samples        int               `json:"samples"`
	Histograms     int               `json:"histograms"`
	Exemplars      int               `json:"exemplars"`
	Error          string            `json:"error,omitempty"`
	Status         int               `json:"status"`
	WrittenHeaders map[string]string `json:"written_headers"`
}

var metricTypes = map[string]writev2.Metadata_MetricType{
	"":               writev2.Metadata_METRIC_TYPE_UNSPECIFIED,
	"counter":        writev2.Metadata_METRIC_TYPE_COUNTER,
	"gauge":          writev2.Metadata_METRIC_TYPE_GAUGE,
	"histogram":      writev2.Metadata_METRIC_TYPE_HISTOGRAM,
	"gaugehistogram": writev2.Metadata_METRIC_TYPE_GAUGEHISTOGRAM,
	"summary":        writev2.Metadata_METRIC_TYPE_SUMMARY,
	"info":           writev2.Metadata_METRIC_TYPE_INFO,
	"stateset":       writev2.Metadata_METRIC_TYPE_STATESET,
}

// sortedPairs flattens labels to name, value, name, value... sorted by name.
func sortedPairs(labels map[string]string) []string {
	out := make([]string, 0, 2*len(labels))
	for _, name := range slices.Sorted(maps.Keys(labels)) {
		out = append(out, name, labels[name])
	}
	return out
}

func spans(in []span) []*writev2.BucketSpan {
	out := make([]*writev2.BucketSpan, 0, len(in))
	for _, s := range in {
		out = append(out, &writev2.BucketSpan{Offset: s.Offset, Length: s.Length})
	}
	return out
}

func toHistogram(h histogram) *writev2.Histogram {
	out := &writev2.Histogram{
		Sum:           h.Sum,
		Schema:        h.Schema,
		ZeroThreshold: h.ZeroThreshold,
		PositiveSpans: spans(h.PositiveSpans),
		NegativeSpans: spans(h.NegativeSpans),
		ResetHint:     writev2.Histogram_ResetHint(h.ResetHint),
		Timestamp:     h.Timestamp,
	}
	if h.Float {
		out.Count = &writev2.Histogram_CountFloat{CountFloat: h.Count}
		out.ZeroCount = &writev2.Histogram_ZeroCountFloat{ZeroCountFloat: h.ZeroCount}
		out.PositiveCounts = h.PositiveCounts
		out.NegativeCounts = h.NegativeCounts
	} else {
		out.Count = &writev2.Histogram_CountInt{CountInt: uint64(h.Count)}
		out.ZeroCount = &writev2.Histogram_ZeroCountInt{ZeroCountInt: uint64(h.ZeroCount)}
		out.PositiveDeltas = h.PositiveDeltas
		out.NegativeDeltas = h.NegativeDeltas
	}
	return out
}

// requestV2 builds a 2.0 Request; every string goes through one symbols table.
func requestV2(in input) (*writev2.Request, error) {
	symbols := writev2.NewSymbolTable()
	req := &writev2.Request{}
	for _, s := range in.Series {
		ts := &writev2.TimeSeries{
			LabelsRefs:       symbols.SymbolizeLabels(sortedPairs(s.Labels), nil),
			CreatedTimestamp: s.CreatedTimestamp,
		}
		for _, smp := range s.Samples {
			ts.Samples = append(ts.Samples, &writev2.Sample{Value: smp.Value, Timestamp: smp.Timestamp})
		}
		for _, h := range s.Histograms {
			ts.Histograms = append(ts.Histograms, toHistogram(h))
		}
		for _, e := range s.Exemplars {
			ts.Exemplars = append(ts.Exemplars, &writev2.Exemplar{
				LabelsRefs: symbols.SymbolizeLabels(sortedPairs(e.Labels), nil),
				Value:      e.Value,
				Timestamp:  e.Timestamp,
			})
		}
		if s.Metadata != nil {
			kind, ok := metricTypes[strings.ToLower(s.Metadata.Type)]
			if !ok {
				return nil, fmt.Errorf("unknown metadata type %q", s.Metadata.Type)
			}
			ts.Metadata = &writev2.Metadata{
				Type:    kind,
				HelpRef: symbols.Symbolize(s.Metadata.Help),
				UnitRef: symbols.Symbolize(s.Metadata.Unit),
			}
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	req.Symbols = symbols.Symbols()
	return req, nil
}

// requestV1 is a prometheus.WriteRequest, already serialised. The remote client
// marshals any message with Size and MarshalToSizedBuffer (the gogo-protobuf
// interface); the module ships no 1.0 types, so the bytes are built here from the
// 1.0 field numbers: WriteRequest{timeseries=1}, TimeSeries{labels=1, samples=2,
// exemplars=3, histograms=4}, Label{name=1, value=2}, Sample{value=1, timestamp=2},
// Exemplar{labels=1, value=2, timestamp=3}. A 1.0 Histogram has the 2.0 field
// numbers, so the 2.0 message is marshalled for it.
type requestV1 []byte

func (r requestV1) Size() int { return len(r) }

func (r requestV1) MarshalToSizedBuffer(buf []byte) (int, error) {
	if len(buf) < len(r) {
		return 0, fmt.Errorf("buffer of %d bytes for %d", len(buf), len(r))
	}
	return copy(buf[len(buf)-len(r):], r), nil
}

func appendLabels(b []byte, labels map[string]string) []byte {
	pairs := sortedPairs(labels)
	for i := 0; i < len(pairs); i += 2 {
		var label []byte
		label = protowire.AppendTag(label, 1, protowire.BytesType)
		label = protowire.AppendString(label, pairs[i])
		label = protowire.AppendTag(label, 2, protowire.BytesType)
		label = protowire.AppendString(label, pairs[i+1])
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, label)
	}
	return b
}

func appendValueTimestamp(b []byte, value float64, timestamp int64) []byte {
	b = protowire.AppendTag(b, 1, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, math.Float64bits(value))
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(timestamp))
}

func buildV1(in input) (requestV1, error) {
	var out []byte
	for _, s := range in.Series {
		ts := appendLabels(nil, s.Labels)
		for _, smp := range s.Samples {
			ts = protowire.AppendTag(ts, 2, protowire.BytesType)
			ts = protowire.AppendBytes(ts, appendValueTimestamp(nil, smp.Value, smp.Timestamp))
		}
		for _, e := range s.Exemplars {
			var ex []byte
			ex = appendLabels(ex, e.Labels)
			ex = protowire.AppendTag(ex, 2, protowire.Fixed64Type)
			ex = protowire.AppendFixed64(ex, math.Float64bits(e.Value))
			ex = protowire.AppendTag(ex, 3, protowire.VarintType)
			ex = protowire.AppendVarint(ex, uint64(e.Timestamp))
			ts = protowire.AppendTag(ts, 3, protowire.BytesType)
			ts = protowire.AppendBytes(ts, ex)
		}
		for _, h := range s.Histograms {
			raw, err := proto.Marshal(toHistogram(h))
			if err != nil {
				return nil, err
			}
			ts = protowire.AppendTag(ts, 4, protowire.BytesType)
			ts = protowire.AppendBytes(ts, raw)
		}
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendBytes(out, ts)
	}
	return out, nil
}

// generated is the fixed set written without -input: n float series, one integer
// native histogram with an exemplar, one float histogram, with metadata.
func generated(cluster string, n int, now int64) input {
	var in input
	for i := range n {
		in.Series = append(in.Series, series{
			Labels: map[string]string{
				"__name__": "rw2client_requests_total", "cluster": cluster,
				"instance": fmt.Sprintf("i-%d", i),
			},
			Samples:  []sample{{Value: float64(i) + 0.5, Timestamp: now}},
			Metadata: &metadata{Type: "counter", Help: "Requests seen.", Unit: ""},
		})
	}
	in.Series = append(in.Series,
		series{
			Labels: map[string]string{"__name__": "rw2client_latency_seconds", "cluster": cluster},
			Histograms: []histogram{{
				Count: 6, Sum: 3.25, Schema: 1, ZeroThreshold: 0.001, ZeroCount: 1,
				PositiveSpans: []span{{Offset: 0, Length: 3}}, PositiveDeltas: []int64{2, 1, -1},
				Timestamp: now,
			}},
			Exemplars: []exemplar{{Labels: map[string]string{"trace_id": "0af7651916cd43dd8448eb211c80319c"}, Value: 0.75, Timestamp: now}},
			Metadata:  &metadata{Type: "histogram", Help: "Latency.", Unit: "seconds"},
		},
		series{
			Labels: map[string]string{"__name__": "rw2client_size_bytes", "cluster": cluster},
			Histograms: []histogram{{
				Float: true, Count: 2.5, Sum: 40, Schema: 0, ZeroThreshold: 0.001, ZeroCount: 0.5,
				PositiveSpans: []span{{Offset: 4, Length: 2}}, PositiveCounts: []float64{1, 1},
				ResetHint: int32(writev2.Histogram_RESET_HINT_GAUGE), Timestamp: now,
			}},
			Metadata: &metadata{Type: "gaugehistogram", Help: "Sizes.", Unit: "bytes"},
		},
	)
	return in
}

// recorder adds the bearer token and remembers the last response's status and
// written-count headers (the client returns the error text, not the response).
type recorder struct {
	token   string
	next    http.RoundTripper
	mu      sync.Mutex
	status  int
	written map[string]string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if r.token != "" {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.next.RoundTrip(req)
	if err == nil {
		written := map[string]string{}
		for name, values := range resp.Header {
			if strings.HasPrefix(name, "X-Prometheus-Remote-Write-") && strings.HasSuffix(name, "-Written") {
				written[name] = strings.Join(values, ",")
			}
		}
		r.mu.Lock()
		r.status, r.written = resp.StatusCode, written
		r.mu.Unlock()
	}
	return resp, err
}

func readInput(path string) (input, error) {
	var in input
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return in, err
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	err = dec.Decode(&in)
	return in, err
}

func main() {
	url := flag.String("url", "", "base URL of the receiver, e.g. http://127.0.0.1:9201")
	path := flag.String("path", "api/v1/write", "path under -url")
	token := flag.String("token", "", "bearer token (none without)")
	protoVersion := flag.Int("proto", 2, "remote write version: 2 or 1")
	inputPath := flag.String("input", "", `JSON series file ("-" for stdin); without it a fixed set`)
	cluster := flag.String("cluster", "alpha", "cluster label of the fixed set")
	count := flag.Int("series", 3, "float series in the fixed set")
	timestamp := flag.Int64("timestamp", 0, "timestamp (ms) of the fixed set; 0 for now")
	retries := flag.Int("max-retries", 1, "retries of 5xx/429/network errors (client backoff, from 100ms)")
	timeout := flag.Duration("timeout", 30*time.Second, "overall deadline")
	flag.Parse()
	if *url == "" || (*protoVersion != 1 && *protoVersion != 2) {
		flag.Usage()
		os.Exit(2)
	}

	var in input
	if *inputPath != "" {
		var err error
		if in, err = readInput(*inputPath); err != nil {
			fmt.Fprintln(os.Stderr, "rw2client: reading input:", err)
			os.Exit(2)
		}
	} else {
		now := *timestamp
		if now == 0 {
			now = time.Now().UnixMilli()
		}
		in = generated(*cluster, *count, now)
	}

	var msgType remote.WriteMessageType
	var msg any
	var err error
	if *protoVersion == 2 {
		msgType = remote.WriteV2MessageType
		msg, err = requestV2(in)
	} else {
		msgType = remote.WriteV1MessageType
		msg, err = buildV1(in)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rw2client: building the request:", err)
		os.Exit(2)
	}

	rec := &recorder{token: *token, next: http.DefaultTransport}
	api, err := remote.NewAPI(*url,
		remote.WithAPIHTTPClient(&http.Client{Transport: rec}),
		remote.WithAPIPath(*path),
		remote.WithAPIBackoff(remote.BackoffConfig{
			Min: 100 * time.Millisecond, Max: time.Second, MaxRetries: *retries,
		}),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rw2client:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	stats, writeErr := api.Write(ctx, msgType, msg)

	rec.mu.Lock()
	out := output{
		Samples: stats.Samples, Histograms: stats.Histograms, Exemplars: stats.Exemplars,
		Status: rec.status, WrittenHeaders: rec.written,
	}
	rec.mu.Unlock()
	if out.WrittenHeaders == nil {
		out.WrittenHeaders = map[string]string{}
	}
	if writeErr != nil {
		out.Error = writeErr.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(2)
	}
}
