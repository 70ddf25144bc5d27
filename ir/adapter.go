package ir

// Adapter is one LoRA adapter on a linear weight W (out x in):
// y = W x + Scale * B (A x), with A (Rank x In) and B (Out x Rank) row-major.
// The runtime applies it unmerged, so the base stays palettized.
type Adapter struct {
	Target string    `json:"target"` // canonical weight name, e.g. "blk.0.attn_q"
	Rank   int       `json:"rank"`
	In     int       `json:"in"`
	Out    int       `json:"out"`
	Scale  float32   `json:"scale"` // alpha / rank
	A      []float32 `json:"-"`
	B      []float32 `json:"-"`
}

// AdapterSet is a named set of adapters over one base model.
type AdapterSet struct {
	Name string `json:"name"`
	// BaseSHA256 identifies the base weights the set was trained on; the
	// runtime refuses a set whose base does not match.
	BaseSHA256 string              `json:"base_sha256"`
	Adapters   map[string]*Adapter `json:"-"`
}

// Bytes is the float16 storage size of the set's A and B matrices.
func (s *AdapterSet) Bytes() int64 {
	var n int64
	for _, a := range s.Adapters {
		n += 2 * int64(len(a.A)+len(a.B))
	}
	return n
}
