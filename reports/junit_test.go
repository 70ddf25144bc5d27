package reports

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
)

// TestJUnit: the report parses back with the counts, names and failure
// messages given, special characters included.
func TestJUnit(t *testing.T) {
	var b bytes.Buffer
	msg := `kld_mean 0.2 (limit <= 0.1): FAIL & "quoted"`
	if err := JUnit(&b, "suite <1>", 1.5, []JUnitCase{{Name: "kld_mean", Class: "c", Failure: msg}, {Name: "ppl_ratio", Class: "c"}}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Suites []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Time     string `xml:"time,attr"`
			Cases    []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if !strings.HasPrefix(b.String(), "<?xml") {
		t.Errorf("no XML header:\n%s", b.String())
	}
	if err := xml.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if len(got.Suites) != 1 {
		t.Fatalf("%d suites", len(got.Suites))
	}
	s := got.Suites[0]
	if s.Name != "suite <1>" || s.Tests != 2 || s.Failures != 1 || s.Time != "1.500" || len(s.Cases) != 2 ||
		s.Cases[0].Failure == nil || s.Cases[0].Failure.Message != msg || s.Cases[0].Failure.Text != msg || s.Cases[1].Failure != nil {
		t.Errorf("parsed back as %+v\n%s", s, b.String())
	}
}
