"""
spicesrv's plugin package.  Channel and display-source plugins
(L{spicesrv.interfaces.IChannelPlugin}, L{spicesrv.interfaces.ISourcePlugin})
are modules here, found with L{twisted.plugin.getPlugins}.  Other
distributions add modules to a C{spicesrv/plugins/} folder of their own on
C{sys.path}, without an C{__init__.py}: C{pluginPackagePaths} makes this
package span them all.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__ = []
