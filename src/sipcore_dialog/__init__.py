"""Dialog tracking with profiles, timers, keepalives and persistence.

Kamailio's ``dialog`` module as a sans-I/O library. Not built yet: this
package is reserved in the distribution so that its import name is stable;
its contents arrive with the dialog issue.
"""

__all__: list[str] = []
