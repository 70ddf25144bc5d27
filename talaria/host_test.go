package talaria

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

func readDoc(t *testing.T) string {
	b, err := os.ReadFile("../docs/TALARIA.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHostCalibrationAndCache(t *testing.T) {
	dir := t.TempDir()
	opt := HostOptions{CacheDir: dir, Threads: 1, Quick: true}
	d, err := HostDevice(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("host (quick): %.1f GB/s, %.2f GFLOP/s, lut4 %.3f G/s, lut3 %.3f G/s, group %.1f ns, dispatch %.2f us",
		d.MemBandwidthGBs, d.PeakTFLOPs*1e3, d.LUTDecodeGElemS["4"], d.LUTDecodeGElemS["3"], d.LUTGroupOverheadNs, d.OpOverheadUs)
	if m := d.MissingSources(); len(m) > 0 {
		t.Errorf("host numbers without a source: %v", m)
	}
	if d.MemBandwidthGBs < 0.1 || d.PeakTFLOPs <= 0 || d.Calibration == nil || d.Calibration.HostKey != HostKey(1) {
		t.Errorf("implausible host profile %+v", d)
	}
	for _, k := range append([]string{"f32", "f16"}, "1", "2", "3", "4", "6", "8") {
		if v := d.MatMulGFLOPs[k]; !(v > 0) {
			t.Errorf("matmul_gflops[%q] = %v: every encoding's product rate is measured", k, v)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "host-profile.json")); err != nil {
		t.Fatal(err)
	}
	// The second call reads the cache (same measurement time).
	d2, err := HostDevice(opt)
	if err != nil {
		t.Fatal(err)
	}
	if d2.Calibration.Measured != d.Calibration.Measured || d2.MemBandwidthGBs != d.MemBandwidthGBs {
		t.Error("cached profile not reused")
	}
	// A different thread count is another host key: recalibrated.
	if k := HostKey(2); k == d.Calibration.HostKey {
		t.Error("host key ignores threads")
	}
	// So is the other palettized arithmetic.
	prev := kernels.SetMode(kernels.ModeInt8)
	ki := HostKey(1)
	kernels.SetMode(kernels.ModeFloat)
	kf := HostKey(1)
	kernels.SetMode(prev)
	if ki == kf {
		t.Error("host key ignores the kernel mode")
	}
	// ResolveDevice("host") goes through the same path.
	if d3, err := ResolveDevice("host", opt); err != nil || d3.Name != "host" {
		t.Fatalf("resolve host: %v", err)
	}
}

// TestHostFullCalibration runs the full-size probes and prints the host
// profile: TALARIA_CALIBRATE=1 go test ./talaria/ -run HostFull -v
func TestHostFullCalibration(t *testing.T) {
	if os.Getenv("TALARIA_CALIBRATE") == "" {
		t.Skip("set TALARIA_CALIBRATE=1 to run the full host calibration")
	}
	d, err := CalibrateHost(HostOptions{Log: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	WriteDevice(os.Stdout, d)
}
