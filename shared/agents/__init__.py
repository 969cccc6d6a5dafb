"""Agents: standing access nobody uses -- per partner agent, its use of customers and the groups that
give it access (:mod:`shared.agents.report`), and removing an idle agent from a group
(:mod:`shared.agents.removal`)."""
