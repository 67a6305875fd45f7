"""Destination sets, selection algorithms, failover and health probing.

Kamailio's ``dispatcher`` module as a sans-I/O library. Not built yet: this
package is reserved in the distribution so that its import name is stable;
its contents arrive with the dispatcher issue.
"""

__all__: list[str] = []
