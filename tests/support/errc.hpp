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

// EXPECT_ERRC_MSG(statement, code, msg): as EXPECT_ERRC, and the error's
// message is stored in msg for further checks.
#ifndef EXPECT_ERRC_MSG
#define EXPECT_ERRC_MSG(stmt, errc, msg)       \
  do {                                         \
    try {                                      \
      stmt;                                    \
      ADD_FAILURE() << #stmt " did not throw"; \
    } catch (const ::sealstore::Error& e_) {   \
      EXPECT_EQ(e_.code(), errc) << e_.what(); \
      (msg) = e_.what();                       \
    }                                          \
  } while (0)
#endif
