"""History: the values a finished run becomes, and the bounded in-memory history."""
