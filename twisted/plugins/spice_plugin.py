from twisted.application.service import ServiceMaker

spice = ServiceMaker("spicesrv", "spicesrv.tap", "A SPICE remote-display server.", "spice")
