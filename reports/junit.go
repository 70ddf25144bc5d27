package reports

import (
	"encoding/xml"
	"fmt"
	"io"
)

// JUnitCase is one test case of a JUnit XML report: Failure empty means
// it passed.
type JUnitCase struct {
	Name    string
	Class   string
	Seconds float64
	Failure string
}

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name    string        `xml:"name,attr"`
	Class   string        `xml:"classname,attr"`
	Time    string        `xml:"time,attr"`
	Failure *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// JUnit writes cases as one test suite in the JUnit XML format that CI
// systems (GitHub Actions reporters, GitLab, Jenkins) read: a failed case
// carries its Failure as the message and the text.
func JUnit(w io.Writer, suite string, seconds float64, cases []JUnitCase) error {
	s := junitSuite{Name: suite, Tests: len(cases), Time: fmt.Sprintf("%.3f", seconds)}
	for _, c := range cases {
		jc := junitCase{Name: c.Name, Class: c.Class, Time: fmt.Sprintf("%.3f", c.Seconds)}
		if c.Failure != "" {
			s.Failures++
			jc.Failure = &junitFailure{Message: c.Failure, Type: "threshold", Text: c.Failure}
		}
		s.Cases = append(s.Cases, jc)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	e := xml.NewEncoder(w)
	e.Indent("", "  ")
	if err := e.Encode(junitSuites{Suites: []junitSuite{s}}); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
