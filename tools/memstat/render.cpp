#include "render.hpp"

#include <fnmatch.h>

#include <fmt/format.h>
#include <algorithm>
#include <ctime>

#include "json_writer.hpp"
#include "table.hpp"

namespace sealstore::memstat {

namespace {

constexpr const char* kSchema = "sealstore-memstat";

std::int64_t diff(std::uint64_t now, std::uint64_t before) {
  return now >= before ? static_cast<std::int64_t>(now - before) : -static_cast<std::int64_t>(before - now);
}

double seconds_between(std::uint64_t later_ns, std::uint64_t earlier_ns) {
  return later_ns > earlier_ns ? static_cast<double>(later_ns - earlier_ns) / 1e9 : 0.0;
}

std::string local_time(std::uint64_t unix_ns) {
  auto t = static_cast<std::time_t>(unix_ns / 1'000'000'000ULL);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
}

std::string with_delta(const std::string& value, std::int64_t delta, bool show) {
  if (!show || delta == 0) return value;
  return fmt::format("{} ({})", value, human_delta(delta));
}

std::string percent(double part, double whole) {
  return whole > 0 ? fmt::format("{:.1f}%", 100.0 * part / whole) : "-";
}

double fragmentation(const SegmentInfo& s) {
  std::uint64_t free = s.capacity - std::min(s.used, s.capacity);
  return free > 0 ? 1.0 - static_cast<double>(std::min(s.largest_free, free)) / static_cast<double>(free) : 0.0;
}

// The same process in the previous refresh: same slot, pid and start time.
const ProcessRow* previous_of(const ProcessRow& r, const Snapshot* prev) {
  if (prev == nullptr) return nullptr;
  for (const auto& p : prev->processes) {
    if (p.info.slot == r.info.slot && p.info.pid == r.info.pid && p.info.start_time == r.info.start_time) return &p;
  }
  return nullptr;
}

struct Cpu {
  bool known = false;
  double percent = 0;
  bool over_interval = false;
};

Cpu cpu_of(const ProcessRow& r, const Snapshot& now, const Snapshot* prev) {
  Cpu c;
  if (!r.alive || !r.stat) return c;
  c.known = true;
  c.percent = r.cpu_percent_since_start;
  const ProcessRow* before = previous_of(r, prev);
  if (before != nullptr && before->stat) {
    double dt = std::chrono::duration<double>(now.taken - prev->taken).count();
    std::uint64_t ticks = r.stat->utime + r.stat->stime;
    std::uint64_t ticks_before = before->stat->utime + before->stat->stime;
    if (dt > 0 && ticks >= ticks_before) {
      c.percent = 100.0 * static_cast<double>(ticks - ticks_before) / clock_ticks_per_second() / dt;
      c.over_interval = true;
    }
  }
  return c;
}

std::string who(WorkerId id, const Snapshot& s) {
  const ProcessRow* p = s.process_by_id(id);
  if (p == nullptr) return fmt::format("worker {} (detached)", id);
  return fmt::format("worker {} (pid {}, {})", id, p->info.pid, p->alive ? "alive" : "dead");
}

std::vector<const ObjectInfo*> deferred_frees(const Snapshot& s) {
  std::vector<const ObjectInfo*> out;
  for (const auto& o : s.objects) {
    if (o.state == ObjectState::ErasePending) out.push_back(&o);
  }
  return out;
}

std::string deferred_text(const Snapshot& s) {
  auto list = deferred_frees(s);
  if (list.empty()) return {};
  std::string out = "\nDeferred frees (erased while pinned; freed when the last pin goes):\n";
  bool any_dead = false;
  for (const ObjectInfo* o : list) {
    std::string pins;
    for (WorkerId id : o->pinned_by) {
      pins += (pins.empty() ? "" : ", ") + who(id, s);
      const ProcessRow* p = s.process_by_id(id);
      any_dead = any_dead || (p != nullptr && !p->alive);
    }
    out += fmt::format("  {}  {}  pinned by {}\n", o->ref.to_string(), human_size(o->size),
                       pins.empty() ? "nobody (being freed now)" : pins);
  }
  if (any_dead) {
    out += "  A dead process's pins are released when another process attaches or calls recover().\n";
  }
  return out;
}

std::string count_delta(std::uint64_t now, std::uint64_t before, bool show) {
  if (!show || now == before) return "";
  return fmt::format(" ({:+})", diff(now, before));
}

std::string header_line(const Snapshot& s, const Snapshot* prev, const Options& o) {
  const SegmentInfo& seg = s.segment;
  bool d = prev != nullptr;
  std::string line = fmt::format("segment {}  {}  capacity {}  used {} ({})  objects {}{}  processes {}\n", seg.name,
                                 seg.path, human_size(seg.capacity),
                                 with_delta(human_size(seg.used), d ? diff(seg.used, prev->segment.used) : 0, d),
                                 percent(static_cast<double>(seg.used), static_cast<double>(seg.capacity)), seg.objects,
                                 count_delta(seg.objects, d ? prev->segment.objects : 0, d), s.processes.size());
  if (s.removed) line += "note: the backing file was removed; the processes still attached keep using it\n";
  if (o.watch_seconds) {
    line += fmt::format("{}, every {}s{}  (Ctrl-C to stop)\n", local_time(s.time_unix_ns), *o.watch_seconds,
                        d ? ", changes since the previous refresh in parentheses" : "");
  }
  return line + "\n";
}

// ---- processes

std::string processes_text(const Options& o, const Snapshot& s, const Snapshot* prev) {
  Table t({{"PID", Align::Right},
           {"ID", Align::Right},
           {"ROLE", Align::Left},
           {"STATE", Align::Left},
           {"SEG_RES", Align::Right},
           {"SEG_PSS", Align::Right},
           {"PRIVATE", Align::Right},
           {"PSS", Align::Right},
           {"%CPU", Align::Right},
           {"PINS", Align::Right},
           {"PINNED", Align::Right},
           {"MADE", Align::Right}});
  std::uint64_t seg_pss = 0;
  std::uint64_t priv = 0;
  std::uint64_t pss = 0;
  std::uint64_t pins = 0;
  std::uint64_t pinned = 0;
  std::uint64_t made = 0;
  double cpu_sum = 0;
  bool any_interval = false;
  std::size_t dead = 0;
  std::vector<std::string> notes;
  for (const auto& r : s.processes) {
    const ProcessRow* before = previous_of(r, prev);
    bool show = before != nullptr && before->memory && r.memory;
    Cpu cpu = cpu_of(r, s, prev);
    any_interval = any_interval || cpu.over_interval;
    std::vector<std::string> cells = {std::to_string(r.info.pid), std::to_string(r.info.id),
                                      std::string(to_string(r.info.role)), r.alive ? "alive" : "dead"};
    if (r.memory) {
      const auto& m = *r.memory;
      const auto* b = show ? &*before->memory : nullptr;
      cells.push_back(with_delta(human_size(m.segment_resident) + (m.segment_resident_exact ? "" : "~"),
                                 b != nullptr ? diff(m.segment_resident, b->segment_resident) : 0, show));
      cells.push_back(human_size(m.segment.pss));
      cells.push_back(with_delta(human_size(m.other.private_bytes),
                                 b != nullptr ? diff(m.other.private_bytes, b->other.private_bytes) : 0, show));
      std::uint64_t total_pss = m.segment.pss + m.other.pss;
      cells.push_back(human_size(total_pss));
      seg_pss += m.segment.pss;
      priv += m.other.private_bytes;
      pss += total_pss;
    } else {
      std::string mark = r.alive ? "?" : "-";
      cells.insert(cells.end(), {mark, mark, mark, mark});
      if (r.alive && !r.memory_error.empty()) notes.push_back(fmt::format("pid {}: {}", r.info.pid, r.memory_error));
    }
    cells.push_back(cpu.known ? fmt::format("{:.1f}", cpu.percent) : "-");
    if (cpu.known) cpu_sum += cpu.percent;
    cells.push_back(std::to_string(r.info.pinned_objects));
    cells.push_back(with_delta(human_size(r.info.pinned_bytes),
                               before != nullptr ? diff(r.info.pinned_bytes, before->info.pinned_bytes) : 0,
                               before != nullptr));
    cells.push_back(std::to_string(r.info.objects_created));
    pins += r.info.pinned_objects;
    pinned += r.info.pinned_bytes;
    made += r.info.objects_created;
    if (!r.alive) ++dead;
    t.add_row(std::move(cells));
  }
  std::string total_res = "?";
  if (s.segment_resident_total) {
    total_res = human_size(*s.segment_resident_total);
    if (prev != nullptr && prev->segment_resident_total) {
      total_res = with_delta(total_res, diff(*s.segment_resident_total, *prev->segment_resident_total), true);
    }
  }
  t.set_totals({"TOTAL", "", "", dead > 0 ? fmt::format("{} dead", dead) : "", total_res, human_size(seg_pss),
                human_size(priv), human_size(pss), fmt::format("{:.1f}", cpu_sum), std::to_string(pins),
                human_size(pinned), std::to_string(made)});
  std::string out = header_line(s, prev, o);
  if (s.processes.empty()) {
    out += "No process is attached.\n";
    out += deferred_text(s);
    return out;
  }
  out += t.render();
  out +=
      "\nSEG_RES  segment pages resident in the process (each counted once; TOTAL: in any process)\n"
      "SEG_PSS  its share of them: a page mapped by N processes counts 1/N to each\n"
      "PRIVATE  memory only this process uses, outside the segment (heap, copies)\n"
      "PSS      its proportional share of all memory; the sum over processes is what they cost\n";
  out += any_interval ? fmt::format("%CPU     over the last {}s\n", *o.watch_seconds)
                      : "%CPU     average since the process started\n";
  for (const auto& n : notes) out += "note: " + n + "\n";
  out += deferred_text(s);
  return out;
}

// ---- objects

std::vector<const ObjectInfo*> select_objects(const Options& o, const Snapshot& s) {
  std::vector<const ObjectInfo*> out;
  for (const auto& obj : s.objects) {
    if (o.state && obj.state != *o.state) continue;
    if (o.name_glob) {
      bool match = std::any_of(obj.names.begin(), obj.names.end(), [&](const std::string& n) {
        return ::fnmatch(o.name_glob->c_str(), n.c_str(), 0) == 0;
      });
      if (!match) continue;
    }
    out.push_back(&obj);
  }
  auto id_less = [](const ObjectInfo* a, const ObjectInfo* b) { return a->ref.id() < b->ref.id(); };
  if (o.sort == SortBy::Size) {
    std::stable_sort(out.begin(), out.end(), [&](const ObjectInfo* a, const ObjectInfo* b) {
      return a->size != b->size ? a->size > b->size : id_less(a, b);
    });
  } else {
    std::stable_sort(out.begin(), out.end(), [&](const ObjectInfo* a, const ObjectInfo* b) {
      return a->created_unix_ns != b->created_unix_ns ? a->created_unix_ns < b->created_unix_ns : id_less(a, b);
    });
  }
  return out;
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "-" : out;
}

// Where a sealed object's bytes are: "segment", "spill", "restoring", and
// "+file" when a spill file holds a copy too.
std::string place_text(const ObjectInfo& o) {
  if (o.state != ObjectState::Sealed) return "-";
  std::string out(to_string(o.place));
  if (o.place == Place::Segment && o.spill_file) out += "+file";
  return out;
}

std::string objects_text(const Options& o, const Snapshot& s, const Snapshot* prev) {
  Table t({{"REF", Align::Left},
           {"NAME", Align::Left},
           {"SIZE", Align::Right},
           {"TYPE", Align::Left},
           {"STATE", Align::Left},
           {"PLACE", Align::Left},
           {"CREATOR", Align::Left},
           {"PINNED BY", Align::Left},
           {"AGE", Align::Right}});
  auto shown = select_objects(o, s);
  std::uint64_t bytes = 0;
  for (const ObjectInfo* obj : shown) {
    std::string pins;
    for (WorkerId id : obj->pinned_by) pins += fmt::format("{}{}", pins.empty() ? "" : ", ", id);
    std::string creator = obj->creator_pid != 0 ? fmt::format("{} (pid {})", obj->creator, obj->creator_pid)
                                                : std::to_string(obj->creator);
    if (obj->sealed_by != 0 && obj->sealed_by != obj->creator) {
      creator += fmt::format(", filled by {}", obj->sealed_by);
    }
    t.add_row({obj->ref.to_string(), join_names(obj->names), human_size(obj->size), obj->type.describe(),
               std::string(to_string(obj->state)), place_text(*obj), creator, pins.empty() ? "-" : pins,
               human_age(seconds_between(s.time_unix_ns, obj->created_unix_ns))});
    bytes += obj->size;
  }
  t.set_totals({fmt::format("TOTAL ({} object{})", shown.size(), shown.size() == 1 ? "" : "s"), "", human_size(bytes)});
  std::string out = header_line(s, prev, o);
  std::string filter;
  if (o.name_glob) filter += fmt::format(" name '{}'", *o.name_glob);
  if (o.state) filter += fmt::format(" state {}", to_string(*o.state));
  if (!filter.empty()) out += fmt::format("Showing {} of {} objects:{}\n", shown.size(), s.objects.size(), filter);
  out += shown.empty() && filter.empty() ? "No objects.\n" : t.render();
  out += "\nPINNED BY lists worker ids (see the processes view); AGE is since the object was made.\n";
  if (!s.segment.spill_directory.empty()) {
    out += "PLACE: segment, spill (only in its spill file; a fetch restores it), +file (a spill file has a copy).\n";
  }
  out += deferred_text(s);
  return out;
}

// ---- replicas (a host of a cluster)

// A replica's name, "sealstore.replica/HOST/TAG:ID" (see sealstore/cluster.hpp).
struct ReplicaName {
  std::size_t from = 0;
  std::string of;  // "TAG:ID" of the ref it copies
};
std::optional<ReplicaName> replica_name_of(const std::string& n) {
  constexpr std::string_view kPrefix = "sealstore.replica/";
  if (n.rfind(kPrefix, 0) != 0) return std::nullopt;
  std::string rest = n.substr(kPrefix.size());
  std::size_t slash = rest.find('/');
  if (slash == 0 || slash == std::string::npos || rest.find_first_not_of("0123456789") != slash) return std::nullopt;
  return ReplicaName{std::stoul(rest.substr(0, slash)), rest.substr(slash + 1)};
}

struct Replica {
  const ObjectInfo* obj;
  ReplicaName name;
};
std::vector<Replica> replicas_of(const Snapshot& s) {
  std::vector<Replica> out;
  for (const ObjectInfo& o : s.objects) {
    for (const std::string& n : o.names) {
      if (auto r = replica_name_of(n)) out.push_back(Replica{&o, *r});
    }
  }
  std::sort(out.begin(), out.end(), [](const Replica& a, const Replica& b) {
    return a.name.from != b.name.from ? a.name.from < b.name.from : a.obj->created_unix_ns < b.obj->created_unix_ns;
  });
  return out;
}

bool is_cluster_host(const Snapshot& s) {
  return std::any_of(s.objects.begin(), s.objects.end(), [](const ObjectInfo& o) {
    return std::find(o.names.begin(), o.names.end(), "sealstore.cluster") != o.names.end();
  });
}

std::string replicas_text(const Options& o, const Snapshot& s, const Snapshot* prev) {
  Table t({{"FROM HOST", Align::Right},
           {"COPY OF (TAG:ID)", Align::Left},
           {"REF HERE", Align::Left},
           {"SIZE", Align::Right},
           {"TYPE", Align::Left},
           {"PINNED BY", Align::Left},
           {"AGE", Align::Right}});
  std::vector<Replica> rs = replicas_of(s);
  std::uint64_t bytes = 0;
  for (const Replica& r : rs) {
    std::string pins;
    for (WorkerId id : r.obj->pinned_by) pins += fmt::format("{}{}", pins.empty() ? "" : ", ", id);
    t.add_row({std::to_string(r.name.from), r.name.of, r.obj->ref.to_string(), human_size(r.obj->size),
               r.obj->type.describe(), pins.empty() ? "-" : pins,
               human_age(seconds_between(s.time_unix_ns, r.obj->created_unix_ns))});
    bytes += r.obj->size;
  }
  t.set_totals({fmt::format("TOTAL ({} replica{})", rs.size(), rs.size() == 1 ? "" : "s"), "", "", human_size(bytes)});
  std::string out = header_line(s, prev, o);
  if (!is_cluster_host(s)) {
    out += "This segment is not a host of a cluster: it holds no replicas.\n";
    return out;
  }
  out += rs.empty() ? "No replicas: nothing was fetched here from another host yet.\n" : t.render();
  out +=
      "\nA replica is this host's copy of another host's object, received once by MPI and then fetched\n"
      "here zero-copy; SIZE totals the bytes received for the replicas held now.\n";
  return out;
}

void json_replicas(JsonWriter& j, const Snapshot& s) {
  j.member("cluster_host", is_cluster_host(s));
  j.key("replicas").begin_array();
  std::uint64_t bytes = 0;
  for (const Replica& r : replicas_of(s)) {
    j.begin_object();
    j.member("from_host", static_cast<std::uint64_t>(r.name.from)).member("copy_of", r.name.of);
    j.member("ref", r.obj->ref.to_string()).member("size", r.obj->size).member("type", r.obj->type.describe());
    j.key("pinned_by").begin_array();
    for (WorkerId id : r.obj->pinned_by) j.value(id);
    j.end_array();
    j.member("created_unix_ns", r.obj->created_unix_ns);
    j.end_object();
    bytes += r.obj->size;
  }
  j.end_array();
  j.member("bytes_received", bytes);
}

// ---- segment

std::string segment_text(const Options& o, const Snapshot& s, const Snapshot* prev) {
  const SegmentInfo& g = s.segment;
  bool d = prev != nullptr;
  const SegmentInfo* p = d ? &prev->segment : nullptr;
  std::uint64_t free = g.capacity - std::min(g.used, g.capacity);
  std::size_t alive = 0;
  for (const auto& r : s.processes) alive += r.alive ? 1 : 0;
  Table t({{"", Align::Left}, {"", Align::Left}});
  t.add_row({"name", g.name});
  t.add_row({"backing file", fmt::format("{}{}", g.path, s.removed ? " (removed)" : "")});
  t.add_row(
      {"file size", fmt::format("{} ({} reserved in memory)", human_size(s.file.size), human_size(s.file.allocated))});
  t.add_row({"permissions",
             fmt::format("{} {}:{} (0{:o})", mode_text(s.file.mode), s.file.owner, s.file.group, s.file.mode)});
  t.add_row({"layout", fmt::format("version {}, segment tag {:08x}", g.layout_version, g.segment_tag)});
  t.add_row({"capacity", human_size(g.capacity)});
  t.add_row({"used", with_delta(fmt::format("{} ({})", human_size(g.used),
                                            percent(static_cast<double>(g.used), static_cast<double>(g.capacity))),
                                d ? diff(g.used, p->used) : 0, d)});
  t.add_row(
      {"free", fmt::format("{} in {} block{}", human_size(free), g.free_extents, g.free_extents == 1 ? "" : "s")});
  t.add_row({"largest free",
             fmt::format("{} (fragmentation {:.1f}%)", human_size(g.largest_free), 100.0 * fragmentation(g))});
  t.add_row(
      {"objects", fmt::format("{} of {}{}", g.objects, g.max_objects, count_delta(g.objects, d ? p->objects : 0, d))});
  t.add_row({"processes", fmt::format("{} attached ({} alive, {} dead not yet reaped)", s.processes.size(), alive,
                                      s.processes.size() - alive)});
  t.add_row({"recoveries", fmt::format("{} dead process{} cleaned up", g.recoveries, g.recoveries == 1 ? "" : "es")});
  if (g.spill_directory.empty()) {
    t.add_row({"spilling", "off"});
  } else {
    t.add_row({"spill folder", g.spill_directory});
    t.add_row({"spilled", with_delta(fmt::format("{} object{}, {}", g.spilled_objects,
                                                 g.spilled_objects == 1 ? "" : "s", human_size(g.spilled_bytes)),
                                     d ? diff(g.spilled_bytes, p->spilled_bytes) : 0, d)});
    t.add_row({"spills, restores", fmt::format("{} spilled, {} restored", g.spills, g.restores)});
    t.add_row({"watermarks", fmt::format("spill above {} ({}) down to {} ({})", human_size(g.spill_high),
                                         percent(static_cast<double>(g.spill_high), static_cast<double>(g.capacity)),
                                         human_size(g.spill_low),
                                         percent(static_cast<double>(g.spill_low), static_cast<double>(g.capacity)))});
  }
  t.add_row({"seal events", fmt::format("{} published, {} subscribed process{}", g.seal_events, g.subscribers,
                                        g.subscribers == 1 ? "" : "es")});
  t.add_row({"created", fmt::format("{} ({} ago)", local_time(g.created_unix_ns),
                                    human_age(seconds_between(s.time_unix_ns, g.created_unix_ns)))});
  std::string table = t.render();
  table.erase(0, table.find('\n') + 1);  // no title row
  std::string out;
  if (o.watch_seconds) {
    out += fmt::format("{}, every {}s{}  (Ctrl-C to stop)\n\n", local_time(s.time_unix_ns), *o.watch_seconds,
                       d ? ", changes since the previous refresh in parentheses" : "");
  }
  out += table;
  out += deferred_text(s);
  return out;
}

// ---- JSON

void json_pinned_by(JsonWriter& j, const ObjectInfo& obj, const Snapshot& s) {
  j.key("pinned_by").begin_array();
  for (WorkerId id : obj.pinned_by) {
    const ProcessRow* p = s.process_by_id(id);
    j.begin_object().member("worker_id", id);
    if (p != nullptr) {
      j.member("pid", p->info.pid).member("alive", p->alive);
    } else {
      j.key("pid").null().key("alive").null();
    }
    j.end_object();
  }
  j.end_array();
}

void json_segment(JsonWriter& j, const Snapshot& s) {
  const SegmentInfo& g = s.segment;
  std::uint64_t free = g.capacity - std::min(g.used, g.capacity);
  std::uint32_t alive = 0;
  for (const auto& r : s.processes) alive += r.alive ? 1 : 0;
  j.key("segment").begin_object();
  j.member("name", g.name).member("path", g.path).member("removed", s.removed);
  j.member("layout_version", g.layout_version).member("segment_tag", fmt::format("{:08x}", g.segment_tag));
  j.key("file").begin_object();
  j.member("size", s.file.size).member("allocated", s.file.allocated);
  j.member("mode", fmt::format("0{:o}", s.file.mode)).member("mode_text", mode_text(s.file.mode));
  j.member("owner", s.file.owner).member("uid", s.file.uid).member("group", s.file.group).member("gid", s.file.gid);
  j.end_object();
  j.member("capacity", g.capacity).member("used", g.used).member("free", free);
  j.member("largest_free", g.largest_free).member("free_extents", g.free_extents);
  j.key("fragmentation").value(fragmentation(g), 4);
  j.member("objects", g.objects).member("max_objects", g.max_objects);
  j.member("processes", static_cast<std::uint32_t>(s.processes.size())).member("processes_alive", alive);
  j.member("recoveries", g.recoveries).member("created_unix_ns", g.created_unix_ns);
  j.key("spill").begin_object();
  j.member("enabled", !g.spill_directory.empty()).member("folder", g.spill_directory);
  j.member("high", g.spill_high).member("low", g.spill_low);
  j.member("spilled_objects", g.spilled_objects).member("spilled_bytes", g.spilled_bytes);
  j.member("spills", g.spills).member("restores", g.restores);
  j.end_object();
  j.member("seal_events", g.seal_events).member("subscribers", g.subscribers);
  j.end_object();
}

void json_memory(JsonWriter& j, const ProcessMemory& m) {
  j.begin_object();
  j.member("segment_resident", m.segment_resident).member("segment_resident_exact", m.segment_resident_exact);
  j.member("segment_rss", m.segment.rss).member("segment_pss", m.segment.pss);
  j.member("segment_private", m.segment.private_bytes).member("segment_shared", m.segment.shared_bytes);
  j.member("segment_mappings", m.segment_mappings);
  j.member("private", m.other.private_bytes).member("shared", m.other.shared_bytes);
  j.member("pss", m.segment.pss + m.other.pss).member("rss", m.segment.rss + m.other.rss);
  j.member("swap", m.segment.swap + m.other.swap);
  j.end_object();
}

void json_deferred(JsonWriter& j, const Snapshot& s) {
  j.key("deferred_frees").begin_array();
  for (const ObjectInfo* o : deferred_frees(s)) {
    j.begin_object().member("ref", o->ref.to_string()).member("size", o->size);
    json_pinned_by(j, *o, s);
    j.end_object();
  }
  j.end_array();
}

void json_processes(JsonWriter& j, const Snapshot& s, const Snapshot* prev) {
  j.key("processes").begin_array();
  std::uint64_t seg_pss = 0;
  std::uint64_t priv = 0;
  std::uint64_t pss = 0;
  std::uint64_t rss = 0;
  std::uint64_t pins = 0;
  std::uint64_t pinned = 0;
  std::uint64_t made = 0;
  std::uint32_t alive = 0;
  double cpu_sum = 0;
  for (const auto& r : s.processes) {
    j.begin_object();
    j.member("pid", r.info.pid).member("start_time", r.info.start_time).member("slot", r.info.slot);
    j.member("worker_id", r.info.id).member("role", to_string(r.info.role)).member("alive", r.alive);
    j.member("attached_unix_ns", r.info.attached_unix_ns);
    j.key("memory");
    if (r.memory) {
      json_memory(j, *r.memory);
      seg_pss += r.memory->segment.pss;
      priv += r.memory->other.private_bytes;
      pss += r.memory->segment.pss + r.memory->other.pss;
      rss += r.memory->segment.rss + r.memory->other.rss;
    } else {
      j.null();
    }
    j.key("memory_error");
    if (r.memory_error.empty()) {
      j.null();
    } else {
      j.value(r.memory_error);
    }
    Cpu cpu = cpu_of(r, s, prev);
    j.key("cpu_percent");
    if (cpu.known) {
      j.value(cpu.percent, 2);
      cpu_sum += cpu.percent;
    } else {
      j.null();
    }
    j.key("cpu_basis");
    if (cpu.known) {
      j.value(cpu.over_interval ? "interval" : "since_start");
    } else {
      j.null();
    }
    j.key("pins")
        .begin_object()
        .member("objects", r.info.pinned_objects)
        .member("bytes", r.info.pinned_bytes)
        .end_object();
    j.member("objects_created", r.info.objects_created);
    const ProcessRow* before = previous_of(r, prev);
    if (before != nullptr) {
      j.key("delta").begin_object();
      if (before->memory && r.memory) {
        j.member("segment_resident", diff(r.memory->segment_resident, before->memory->segment_resident));
        j.member("private", diff(r.memory->other.private_bytes, before->memory->other.private_bytes));
        j.member("pss", diff(r.memory->segment.pss + r.memory->other.pss,
                             before->memory->segment.pss + before->memory->other.pss));
      }
      j.member("pinned_bytes", diff(r.info.pinned_bytes, before->info.pinned_bytes));
      j.end_object();
    }
    j.end_object();
    pins += r.info.pinned_objects;
    pinned += r.info.pinned_bytes;
    made += r.info.objects_created;
    alive += r.alive ? 1 : 0;
  }
  j.end_array();
  j.key("totals").begin_object();
  j.member("processes", static_cast<std::uint32_t>(s.processes.size())).member("alive", alive);
  j.member("dead", static_cast<std::uint32_t>(s.processes.size()) - alive);
  j.key("segment_resident");
  if (s.segment_resident_total) {
    j.value(*s.segment_resident_total);
  } else {
    j.null();
  }
  j.member("segment_pss", seg_pss).member("private", priv).member("pss", pss).member("rss", rss);
  j.key("cpu_percent").value(cpu_sum, 2);
  j.key("pins").begin_object().member("objects", pins).member("bytes", pinned).end_object();
  j.member("objects_created", made);
  j.end_object();
}

void json_objects(JsonWriter& j, const Options& o, const Snapshot& s) {
  auto shown = select_objects(o, s);
  j.key("filter").begin_object();
  j.key("name");
  if (o.name_glob) {
    j.value(*o.name_glob);
  } else {
    j.null();
  }
  j.key("state");
  if (o.state) {
    j.value(to_string(*o.state));
  } else {
    j.null();
  }
  j.end_object();
  j.member("sort", o.sort == SortBy::Size ? "size" : "age");
  j.key("objects").begin_array();
  std::uint64_t bytes = 0;
  for (const ObjectInfo* obj : shown) {
    j.begin_object();
    j.member("ref", obj->ref.to_string()).member("id", obj->ref.id());
    j.member("where", obj->ref.where()).member("whence", obj->ref.whence());
    j.key("names").begin_array();
    for (const auto& n : obj->names) j.value(n);
    j.end_array();
    j.member("size", obj->size).member("type", obj->type.describe()).member("state", to_string(obj->state));
    j.member("place", to_string(obj->place)).member("spill_file", obj->spill_file);
    j.key("creator").begin_object().member("worker_id", obj->creator).member("pid", obj->creator_pid).end_object();
    j.key("sealed_by")
        .begin_object()
        .member("worker_id", obj->sealed_by)
        .member("pid", obj->sealed_by_pid)
        .end_object();
    j.member("created_unix_ns", obj->created_unix_ns);
    j.key("age_seconds").value(seconds_between(s.time_unix_ns, obj->created_unix_ns), 3);
    json_pinned_by(j, *obj, s);
    j.member("waiters", obj->waiters);
    j.end_object();
    bytes += obj->size;
  }
  j.end_array();
  j.key("totals").begin_object();
  j.member("objects", static_cast<std::uint64_t>(shown.size())).member("bytes", bytes);
  j.member("all_objects", static_cast<std::uint64_t>(s.objects.size()));
  j.end_object();
}

void json_envelope(JsonWriter& j, std::string_view view, std::uint64_t time_ns) {
  j.member("schema", kSchema).member("schema_version", kSchemaVersion).member("view", view);
  j.member("time_unix_ns", time_ns);
}

}  // namespace

std::string render_view_text(const Options& o, const Snapshot& now, const Snapshot* prev) {
  switch (o.view) {
    case View::Processes: return processes_text(o, now, prev);
    case View::Objects: return objects_text(o, now, prev);
    case View::Segment: return segment_text(o, now, prev);
    case View::Replicas: return replicas_text(o, now, prev);
  }
  return {};
}

std::string render_view_json(const Options& o, const Snapshot& now, const Snapshot* prev, bool pretty,
                             std::uint64_t sequence) {
  JsonWriter j(pretty);
  j.begin_object();
  std::string_view view = o.view == View::Processes ? "processes"
                          : o.view == View::Objects ? "objects"
                          : o.view == View::Segment ? "segment"
                                                    : "replicas";
  json_envelope(j, view, now.time_unix_ns);
  j.key("watch");
  if (o.watch_seconds) {
    j.begin_object().member("sequence", sequence);
    j.key("interval_seconds").value(*o.watch_seconds, 3);
    j.key("since_previous_seconds");
    if (prev != nullptr) {
      j.value(std::chrono::duration<double>(now.taken - prev->taken).count(), 3);
    } else {
      j.null();
    }
    j.end_object();
  } else {
    j.null();
  }
  json_segment(j, now);
  if (o.view == View::Processes) json_processes(j, now, prev);
  if (o.view == View::Objects) json_objects(j, o, now);
  if (o.view == View::Replicas) json_replicas(j, now);
  if (o.view == View::Segment && prev != nullptr) {
    j.key("delta").begin_object();
    j.member("used", diff(now.segment.used, prev->segment.used));
    j.member("objects", diff(now.segment.objects, prev->segment.objects));
    j.end_object();
  }
  json_deferred(j, now);
  j.end_object();
  return j.str() + "\n";
}

std::string render_list_text(const std::vector<SegmentListing>& segments, const std::string& directory) {
  if (segments.empty()) return fmt::format("No sealstore segments in {}.\n", directory);
  Table t({{"NAME", Align::Left},
           {"SIZE", Align::Right},
           {"OWNER", Align::Left},
           {"MODE", Align::Left},
           {"STATE", Align::Left},
           {"ATTACHED", Align::Right},
           {"DEAD", Align::Right},
           {"LOCKS", Align::Right},
           {"OBJECTS", Align::Right},
           {"USED", Align::Right},
           {"AGE", Align::Right}});
  std::uint64_t size = 0;
  std::uint64_t attached = 0;
  std::uint64_t now = unix_now_ns();
  std::vector<std::string> notes;
  for (const auto& s : segments) {
    bool ok = s.status == SegmentStatus::Ok;
    t.add_row({s.name, s.file ? human_size(s.file->size) : "-", s.file ? s.file->owner : "-",
               s.file ? mode_text(s.file->mode) : "-", std::string(to_string(s.status)),
               ok ? std::to_string(s.alive) : "-", ok ? std::to_string(s.dead) : "-",
               std::to_string(s.lock_holders.size()), ok ? std::to_string(s.info->objects) : "-",
               ok ? human_size(s.info->used) : "-", human_age(seconds_between(now, s.created_unix_ns))});
    if (s.file) size += s.file->size;
    attached += s.alive;
    if (!ok) notes.push_back(fmt::format("{}: {}", s.name, s.error));
  }
  t.set_totals({fmt::format("TOTAL ({} segment{})", segments.size(), segments.size() == 1 ? "" : "s"), human_size(size),
                "", "", "", std::to_string(attached)});
  std::string out = fmt::format("Segments in {}:\n\n", directory) + t.render();
  out +=
      "\nATTACHED: live processes in its process table; DEAD: dead ones not yet cleaned up;\n"
      "LOCKS: processes holding its file lock (every attached process holds one).\n";
  for (const auto& n : notes) out += "note: " + n + "\n";
  return out;
}

std::string render_list_json(const std::vector<SegmentListing>& segments, const std::string& directory) {
  JsonWriter j(true);
  j.begin_object();
  json_envelope(j, "list", unix_now_ns());
  j.member("directory", directory);
  j.key("segments").begin_array();
  for (const auto& s : segments) {
    bool ok = s.status == SegmentStatus::Ok;
    j.begin_object();
    j.member("name", s.name).member("path", s.path).member("status", to_string(s.status));
    j.key("error");
    if (ok) {
      j.null();
    } else {
      j.value(s.error);
    }
    j.key("file");
    if (s.file) {
      j.begin_object().member("size", s.file->size).member("allocated", s.file->allocated);
      j.member("mode", fmt::format("0{:o}", s.file->mode)).member("owner", s.file->owner).member("uid", s.file->uid);
      j.end_object();
    } else {
      j.null();
    }
    j.key("attached_alive");
    ok ? j.value(s.alive) : j.null();
    j.key("attached_dead");
    ok ? j.value(s.dead) : j.null();
    j.key("lock_holders").begin_array();
    for (const auto& h : s.lock_holders) {
      j.begin_object().member("pid", h.pid).member("exclusive", h.exclusive).end_object();
    }
    j.end_array();
    j.key("capacity");
    ok ? j.value(s.info->capacity) : j.null();
    j.key("used");
    ok ? j.value(s.info->used) : j.null();
    j.key("objects");
    ok ? j.value(s.info->objects) : j.null();
    j.key("layout_version");
    ok ? j.value(s.info->layout_version) : j.null();
    j.member("created_unix_ns", s.created_unix_ns);
    j.end_object();
  }
  j.end_array();
  j.end_object();
  return j.str() + "\n";
}

std::string render_gc_text(const std::vector<GcDecision>& decisions, bool done) {
  if (decisions.empty()) return "No sealstore segments to consider.\n";
  Table t({{"NAME", Align::Left}, {"SIZE", Align::Right}, {"ACTION", Align::Left}, {"REASON", Align::Left}});
  std::uint64_t freed = 0;
  std::size_t n = 0;
  for (const auto& d : decisions) {
    std::string action = done ? (d.remove ? "removed" : "kept") : (d.remove ? "remove" : "keep");
    t.add_row({d.segment.name, d.segment.file ? human_size(d.segment.file->size) : "-", action, d.reason});
    if (d.remove && d.segment.file) freed += d.segment.file->allocated;
    n += d.remove ? 1 : 0;
  }
  std::string out = t.render();
  if (done) {
    out += n == 0
               ? "\nNothing removed.\n"
               : fmt::format("\nRemoved {} segment{}, {} of memory freed.\n", n, n == 1 ? "" : "s", human_size(freed));
  }
  return out;
}

std::string render_gc_json(const std::vector<GcDecision>& decisions, const std::string& directory, bool asked,
                           bool confirmed, const std::vector<std::string>& spill_folders) {
  JsonWriter j(true);
  j.begin_object();
  json_envelope(j, "gc", unix_now_ns());
  j.member("directory", directory).member("asked", asked).member("confirmed", confirmed);
  j.key("segments").begin_array();
  std::size_t removed = 0;
  for (const auto& d : decisions) {
    j.begin_object().member("name", d.segment.name).member("path", d.segment.path);
    j.key("size");
    d.segment.file ? j.value(d.segment.file->size) : j.null();
    std::string action = d.remove ? (confirmed ? "removed" : "declined") : "kept";
    j.member("action", action).member("reason", d.reason);
    j.end_object();
    removed += d.remove && confirmed ? 1 : 0;
  }
  j.end_array();
  j.member("removed", static_cast<std::uint64_t>(removed));
  j.key("spill_folders_removed").begin_array();
  for (const auto& f : spill_folders) j.value(f);
  j.end_array();
  j.end_object();
  return j.str() + "\n";
}

}  // namespace sealstore::memstat
