// An Ollama-faithful stand-in for the differential tests: it binds request
// bodies with Go's encoding/json exactly as Ollama's gin handlers do
// (ShouldBindJSON: json.NewDecoder(body).Decode into the request struct; the
// /v1 cloud passthrough's json.Unmarshal into a map first), reads multipart
// forms with ParseMultipartForm and FormValue, and applies Ollama's source
// suffix rule (shared/ollama-wire.md §8b). It answers every request with what
// it resolved, so a test can compare that with what the proxy allowed.
//
// Usage: goupstream ADDR   (prints "listening <addr>" once ready)
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"unicode"
)

// Resolved is one model-bearing field as Ollama binds it.
type Resolved struct {
	Field string `json:"field"`
	Value string `json:"value"`
	Cloud bool   `json:"cloud"`
}

// Reply is what the stand-in answers with.
type Reply struct {
	ResolvedBy string     `json:"resolved_by"`
	Route      string     `json:"route"`
	Models     []Resolved `json:"models"`
	Remote     bool       `json:"remote"`
	Encoding   string     `json:"content_encoding"`
}

// Ollama's request structs, reduced to the fields that name models.
type modelReq struct {
	Model string `json:"model"`
	Name  string `json:"name"`
}

type createReq struct {
	Model      string `json:"model"`
	Name       string `json:"name"`
	From       string `json:"from"`
	RemoteHost string `json:"remote_host"`
}

type copyReq struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
}

// isCloud follows Ollama's parseSourceSuffix: the text after the last ':',
// trimmed and lower-cased, is "cloud", or ends in "-cloud" without a '/'.
func isCloud(raw string) bool {
	raw = strings.TrimSpace(raw)
	idx := strings.LastIndex(raw, ":")
	if idx < 0 {
		return false
	}
	suffixRaw := strings.TrimSpace(raw[idx+1:])
	suffix := strings.ToLower(suffixRaw)
	if suffix == "cloud" {
		return true
	}
	return !strings.Contains(suffixRaw, "/") && strings.HasSuffix(suffix, "-cloud")
}

func resolved(field, value string) Resolved {
	return Resolved{Field: field, Value: value, Cloud: isCloud(value)}
}

// firstNonEmpty is Go's cmp.Or for strings, as Ollama's handlers use it.
func firstNonEmpty(field1, v1, field2, v2 string) []Resolved {
	if v1 != "" {
		return []Resolved{resolved(field1, v1)}
	}
	if v2 != "" {
		return []Resolved{resolved(field2, v2)}
	}
	return nil
}

var passthrough = map[string]bool{
	"/v1/chat/completions": true, "/v1/completions": true, "/v1/embeddings": true,
	"/v1/responses": true, "/v1/messages": true,
}

func bind(w http.ResponseWriter, r *http.Request, v any) bool {
	// gin's ShouldBindJSON: a Decoder reads the first JSON value only.
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return false
	}
	return true
}

func handle(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	reply := Reply{ResolvedBy: "go", Route: path, Encoding: r.Header.Get("Content-Encoding")}
	if reply.Encoding != "" && reply.Encoding != "identity" {
		// The proxy sends bodies on decoded; anything else would be read raw.
		http.Error(w, "unexpected Content-Encoding "+reply.Encoding, http.StatusInternalServerError)
		return
	}
	switch {
	case passthrough[path]:
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// The cloud passthrough: json.Unmarshal into a map, exact key "model".
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) == nil {
			var model string
			if json.Unmarshal(m["model"], &model) == nil && strings.TrimSpace(model) != "" {
				reply.Models = append(reply.Models, resolved("passthrough.model", strings.TrimSpace(model)))
			}
		}
		var req modelReq
		r.Body = io.NopCloser(bytes.NewReader(raw))
		if !bind(w, r, &req) {
			return
		}
		if req.Model != "" {
			reply.Models = append(reply.Models, resolved("model", req.Model))
		}
	case path == "/api/generate", path == "/api/chat", path == "/api/embed", path == "/api/embeddings":
		var req modelReq
		if !bind(w, r, &req) {
			return
		}
		if req.Model != "" {
			reply.Models = append(reply.Models, resolved("model", req.Model))
		}
	case path == "/api/show", path == "/api/pull", path == "/api/push", path == "/api/delete":
		var req modelReq
		if !bind(w, r, &req) {
			return
		}
		reply.Models = firstNonEmpty("model", req.Model, "name", req.Name)
	case path == "/api/create":
		var req createReq
		if !bind(w, r, &req) {
			return
		}
		reply.Models = firstNonEmpty("model", req.Model, "name", req.Name)
		if req.From != "" {
			reply.Models = append(reply.Models, resolved("from", req.From))
		}
		reply.Remote = req.RemoteHost != ""
	case path == "/api/copy":
		var req copyReq
		if !bind(w, r, &req) {
			return
		}
		for _, f := range []Resolved{resolved("source", req.Source), resolved("destination", req.Destination)} {
			if f.Value != "" {
				reply.Models = append(reply.Models, f)
			}
		}
	case path == "/v1/audio/transcriptions":
		if err := r.ParseMultipartForm(25 << 20); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if model := r.FormValue("model"); model != "" {
			reply.Models = append(reply.Models, resolved("form.model", model))
		}
	case strings.HasPrefix(path, "/v1/models/") && !strings.Contains(path[len("/v1/models/"):], "/"):
		if model := strings.TrimSpace(path[len("/v1/models/"):]); model != "" {
			reply.Models = append(reply.Models, resolved("path", model))
		}
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(reply)
}

// foldTable prints every rune whose Unicode simple fold is an ASCII letter
// other than its own ASCII case pair, for the fold-table test.
func foldTable() {
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < 0x80 && unicode.IsLetter(f) {
				fmt.Printf("%04X %c\n", r, unicode.ToLower(f))
				break
			}
		}
	}
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "folds" {
		foldTable()
		return
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	_ = http.Serve(ln, http.HandlerFunc(handle))
}
