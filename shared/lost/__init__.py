"""Access the partner lost without this product removing it: a customer removing DAP or terminating a
GDAP relationship, Microsoft removing DAP, a relationship expiring. Noticed after each relationship sync,
explained as far as the data tells, alerted once, listed in the portal, the trail and the digest."""
