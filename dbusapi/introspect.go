// SPDX-License-Identifier: Apache-2.0

package dbusapi

import (
	_ "embed"
	"strings"

	"github.com/godbus/dbus/v5"
)

// The introspection data is kept as the XML files installed to /usr/share/dbus-1/interfaces/,
// so what the objects serve and what is installed cannot differ (a test also compares them).
var (
	//go:embed xml/io.jackfruit.Jackfruit1.Manager.xml
	ManagerXML string
	//go:embed xml/io.jackfruit.Jackfruit1.Container.xml
	ContainerXML string
)

const xmlDoctype = `<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
`

// withChildren inserts child <node/> elements before the closing </node>.
func withChildren(xml string, children []string) string {
	i := strings.LastIndex(xml, "</node>")
	var b strings.Builder
	b.WriteString(xml[:i])
	for _, c := range children {
		b.WriteString(` <node name="` + c + `"/>` + "\n")
	}
	b.WriteString(xml[i:])
	return b.String()
}

// parentXML describes the node holding the container objects.
func parentXML(children []string) string {
	const node = xmlDoctype + `<node>
 <interface name="org.freedesktop.DBus.Peer">
  <method name="Ping"/>
  <method name="GetMachineId">
   <arg type="s" name="machine_uuid" direction="out"/>
  </method>
 </interface>
 <interface name="org.freedesktop.DBus.Introspectable">
  <method name="Introspect">
   <arg name="xml_data" type="s" direction="out"/>
  </method>
 </interface>
</node>
`
	return withChildren(node, children)
}

func (s *Server) managerIntrospect(dbus.Message) (string, *dbus.Error) {
	return withChildren(ManagerXML, []string{containerRootRelative}), nil
}
