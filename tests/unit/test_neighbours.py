from hypr.reconcile.neighbours import forward_drop_chains

LISTING = """table ip filter {
	chain FORWARD {
		type filter hook forward priority filter; policy drop;
	}
	chain INPUT {
		type filter hook input priority filter; policy drop;
	}
}
table inet hypr {
	chain forward {
		type filter hook forward priority filter; policy drop;
	}
}
table inet firewalld {
	chain filter_FORWARD {
		type filter hook forward priority filter + 10; policy accept;
	}
}
"""


def test_only_other_tables_forward_drop_chains_are_reported() -> None:
    assert forward_drop_chains(LISTING) == [("ip filter", "FORWARD")]
    assert forward_drop_chains("") == []
