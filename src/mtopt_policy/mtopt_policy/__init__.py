"""mtopt_policy: the policy and collector nodes of an MT-Opt cell."""
