// SPDX-License-Identifier: Apache-2.0

package dbusapi_test

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/jackfruit/jackfruit/dbusapi"
	"github.com/jackfruit/jackfruit/internal/testutil"
)

func repoFile(t *testing.T, rel string) string {
	t.Helper()
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withoutChildNodes drops the <node name="..."/> lines an object adds for its children.
func withoutChildNodes(s string) string {
	var keep []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "<node name=") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "")
}

// TestServedIntrospectionEqualsInstalledFiles proves that what the objects answer to
// Introspect is, byte for byte, the file installed to /usr/share/dbus-1/interfaces/.
func TestServedIntrospectionEqualsInstalledFiles(t *testing.T) {
	e := setup(t)
	e.start(t, "hog", nil)
	for _, tc := range []struct {
		path  dbus.ObjectPath
		file  string
		child []string
	}{
		{dbusapi.ManagerPath, "dbusapi/xml/io.jackfruit.Jackfruit1.Manager.xml", []string{"container"}},
		{dbusapi.ContainerPath("hog"), "dbusapi/xml/io.jackfruit.Jackfruit1.Container.xml", nil},
	} {
		var served string
		if err := e.client.Object(dbusapi.BusName, tc.path).Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&served); err != nil {
			t.Fatal(err)
		}
		if got, want := withoutChildNodes(served), repoFile(t, tc.file); got != want {
			t.Errorf("%s serves introspection data that differs from %s:\n%s", tc.path, tc.file, served)
		}
		var node introspect.Node
		if err := xml.Unmarshal([]byte(served), &node); err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		var children []string
		for _, c := range node.Children {
			children = append(children, c.Name)
		}
		if !reflect.DeepEqual(children, tc.child) {
			t.Errorf("%s children %v, want %v", tc.path, children, tc.child)
		}
	}
	var parent string
	if err := e.client.Object(dbusapi.BusName, dbusapi.ContainerPathPrefix).Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&parent); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(parent, `<node name="hog"/>`) {
		t.Errorf("container parent node lacks the container:\n%s", parent)
	}
}

// TestInterfaceFilesMatchImplementation checks the XML against what the adapter really
// answers: every declared method exists, every declared property comes back from GetAll with
// the declared type and nothing else does.
func TestInterfaceFilesMatchImplementation(t *testing.T) {
	e := setup(t)
	path := e.start(t, "hog", nil)
	for _, tc := range []struct {
		xml, iface string
		path       dbus.ObjectPath
	}{
		{dbusapi.ManagerXML, dbusapi.ManagerInterface, dbusapi.ManagerPath},
		{dbusapi.ContainerXML, dbusapi.ContainerInterface, path},
	} {
		var node introspect.Node
		if err := xml.Unmarshal([]byte(tc.xml), &node); err != nil {
			t.Fatal(err)
		}
		var names []string
		var ours *introspect.Interface
		for i := range node.Interfaces {
			names = append(names, node.Interfaces[i].Name)
			if node.Interfaces[i].Name == tc.iface {
				ours = &node.Interfaces[i]
			}
		}
		want := []string{"org.freedesktop.DBus.Peer", "org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Properties", tc.iface}
		if !slices.Equal(names, want) || ours == nil {
			t.Fatalf("interfaces %v, want %v", names, want)
		}
		obj := e.client.Object(dbusapi.BusName, tc.path)
		var all map[string]dbus.Variant
		if err := obj.Call("org.freedesktop.DBus.Properties.GetAll", 0, tc.iface).Store(&all); err != nil {
			t.Fatal(err)
		}
		if len(all) != len(ours.Properties) {
			t.Errorf("%s: GetAll returned %d properties, XML declares %d", tc.iface, len(all), len(ours.Properties))
		}
		for _, p := range ours.Properties {
			v, ok := all[p.Name]
			if !ok || v.Signature().String() != p.Type || p.Access != "read" {
				t.Errorf("%s.%s: XML says %s %s, GetAll gave %v", tc.iface, p.Name, p.Type, p.Access, v)
			}
		}
		// Calling a declared method with no arguments must reach the handler (InvalidArgs
		// naming the method or a real answer), never UnknownMethod.
		for _, m := range ours.Methods {
			err := obj.Call(tc.iface+"."+m.Name, dbus.FlagNoAutoStart).Err
			if derr, ok := err.(dbus.Error); ok && derr.Name == "org.freedesktop.DBus.Error.UnknownMethod" {
				t.Errorf("%s.%s declared but not implemented", tc.iface, m.Name)
			}
		}
	}
}

func TestActivationFile(t *testing.T) {
	got := map[string]string{}
	section := ""
	for _, l := range strings.Split(repoFile(t, "units/io.jackfruit.Jackfruit1.service"), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "["):
			section = l
		default:
			k, v, _ := strings.Cut(l, "=")
			got[section+k] = v
		}
	}
	want := map[string]string{
		"[D-BUS Service]Name":           "io.jackfruit.Jackfruit1",
		"[D-BUS Service]Exec":           "/bin/false",
		"[D-BUS Service]User":           "root",
		"[D-BUS Service]SystemdService": "jackfruit.service",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("activation file keys %v, want %v", got, want)
	}
}
