#include <unistd.h>

#include <iostream>
#include <string>

#include <sealstore/sealstore.hpp>

int main() {
  std::string name = "consumer-" + std::to_string(::getpid());
  int rc = 1;
  {
    sealstore::CreateOptions o;
    o.capacity = 1 << 20;
    auto store = sealstore::Store::create(name, o);
    auto ref = store.put(std::string("hello from an installed sealstore"));
    auto view = store.fetch(ref);
    std::cout << view.as_string() << " via " << ref.to_string() << "\n";
    rc = view.as_string() == "hello from an installed sealstore" ? 0 : 1;
  }
  sealstore::Store::remove(name);
  return rc;
}
