"""The rtpengine "ng" control protocol and a pool of rtpengine nodes.

Kamailio's ``rtpengine`` module as a sans-I/O library. Not built yet: this
package is reserved in the distribution so that its import name is stable;
its contents arrive with the media issue.
"""

__all__: list[str] = []
