// EXPECT_ERRC(statement, code): the statement throws sealstore::Error with
// exactly that code (the message is printed when it does not).
#pragma once

#include <gtest/gtest.h>

#include "sealstore/error.hpp"

#ifndef EXPECT_ERRC
#define EXPECT_ERRC(stmt, errc)                \
  do {                                         \
    try {                                      \
      stmt;                                    \
      ADD_FAILURE() << #stmt " did not throw"; \
    } catch (const ::sealstore::Error& e_) {   \
      EXPECT_EQ(e_.code(), errc) << e_.what(); \
    }                                          \
  } while (0)
#endif
