package restorecheck

import (
	"bufio"
	"strings"
)

// CRIU locks the network of the processes it dumps or restores with
// netfilter: with iptables in a chain named CRIU of the filter table, with
// nftables in a table whose name starts with CRIU (CRIU-<pid> in CRIU 3.16
// to 4.2). A restore that fails half-way can leave either behind, which
// drops every packet of the pod.
const criuChainPrefix = "CRIU"

// IPTablesChains returns the CRIU chains in the output of iptables-save or
// ip6tables-save, as "<table> <chain>".
func IPTablesChains(save string) []string {
	var out []string
	table := ""
	scanner := bufio.NewScanner(strings.NewReader(save))
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		switch {
		case strings.HasPrefix(line, "*"):
			table = strings.TrimPrefix(line, "*")
		case strings.HasPrefix(line, ":"):
			chain, _, _ := strings.Cut(strings.TrimPrefix(line, ":"), " ")
			if strings.HasPrefix(chain, criuChainPrefix) {
				out = append(out, table+" "+chain)
			}
		}
	}
	return out
}

// NftablesTables returns the CRIU tables in the output of "nft list
// tables", as "<family> <table>".
func NftablesTables(list string) []string {
	var out []string
	scanner := bufio.NewScanner(strings.NewReader(list))
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) == 3 && fields[0] == "table" && strings.HasPrefix(fields[2], criuChainPrefix) {
			out = append(out, fields[1]+" "+fields[2])
		}
	}
	return out
}
