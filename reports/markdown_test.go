package reports

import (
	"bytes"
	"testing"
)

func TestMarkdownTable(t *testing.T) {
	var b bytes.Buffer
	if err := MarkdownTable(&b, []string{"check", "value"}, [][]string{{"kld_mean", "0.1"}, {"a|b", "x\ny"}}); err != nil {
		t.Fatal(err)
	}
	want := "| check | value |\n|---|---|\n| kld_mean | 0.1 |\n| a\\|b | x y |\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	if err := MarkdownTable(&b, []string{"a", "b"}, [][]string{{"1"}}); err == nil {
		t.Error("a short row was accepted")
	}
}
